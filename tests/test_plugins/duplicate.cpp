// Test-only plugin (build/test_plugins/test_duplicate.so): registers tokenizer "char", the name
// the real plugins/tokenizers/char already uses, so the registry must refuse the second
// registration with a message naming both files.
#include "lab/error.h"
#include "lab/plugin.h"

namespace {

// A complete (if trivial) tokenizer, so this plugin is valid in every way but its name.
class LatinOneTokenizer : public lab::Tokenizer {
public:
    std::vector<int32_t> encode(std::string_view text) const override {
        return std::vector<int32_t>(text.begin(), text.end());
    }
    std::string decode(const std::vector<int32_t>& ids) const override {
        std::string text;
        for (int32_t id : ids) {
            if (id < 0 || id >= 256)
                throw lab::DataError("tokenizer/char (test duplicate): id " + std::to_string(id) +
                                     " is outside [0, 256)");
            text += static_cast<char>(id);
        }
        return text;
    }
    int64_t vocab_size() const override { return 256; }
    std::filesystem::path save(const std::filesystem::path&) const override {
        throw lab::DataError("tokenizer/char (test duplicate) has a fixed vocabulary and writes no file; "
                             "use the real tokenizer/char plugin");
    }
};

}  // namespace

LAB_PLUGIN(registry) {
    registry.add_tokenizer({"char", "0.1", "test plugin: duplicates tokenizer/char", {}},
                           [](const lab::Options&, lab::BuildContext&) {
                               return std::make_shared<LatinOneTokenizer>();
                           });
}
