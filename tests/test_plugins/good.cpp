// Test-only plugin (build/test_plugins/test_good.so): a well-formed plugin with a real, tiny
// tokenizer and schedule, so the registry tests can check that a factory obtained through
// load_library builds a working object. Kept out of build/plugins so labrun never loads it.
#include <fstream>

#include "lab/error.h"
#include "lab/plugin.h"

namespace {

// tokenizer/test_upper: one id per byte (ids are the byte values, vocabulary of 256); with
// `uppercase = true` ASCII letters are upper-cased before encoding, so the option visibly reaches
// the object the factory makes.
class ByteTokenizer : public lab::Tokenizer {
public:
    explicit ByteTokenizer(bool uppercase) : uppercase_(uppercase) {}

    std::vector<int32_t> encode(std::string_view text) const override {
        std::vector<int32_t> ids;
        ids.reserve(text.size());
        for (char c : text) {
            auto byte = static_cast<unsigned char>(c);
            if (uppercase_ && byte >= 'a' && byte <= 'z') byte = static_cast<unsigned char>(byte - 'a' + 'A');
            ids.push_back(byte);
        }
        return ids;
    }

    std::string decode(const std::vector<int32_t>& ids) const override {
        std::string text;
        text.reserve(ids.size());
        for (size_t k = 0; k < ids.size(); ++k) {
            if (ids[k] < 0 || ids[k] >= 256)
                throw lab::DataError("tokenizer/test_upper: id " + std::to_string(ids[k]) + " at position " +
                                     std::to_string(k) + " is outside the vocabulary [0, 256); ids are byte values");
            text += static_cast<char>(ids[k]);
        }
        return text;
    }

    int64_t vocab_size() const override { return 256; }

    std::filesystem::path save(const std::filesystem::path& dir) const override {
        std::filesystem::create_directories(dir);
        std::filesystem::path file = dir / "test_upper.txt";
        std::ofstream out(file, std::ios::binary);
        out << "test_upper bytes 256 uppercase=" << (uppercase_ ? "true" : "false") << "\n";
        if (!out) throw lab::DataError("tokenizer/test_upper: cannot write '" + file.string() + "'");
        return file;
    }

private:
    bool uppercase_;
};

// schedule/test_const: the optimizer's lr times a constant factor at every step.
class ConstantFactor : public lab::Schedule {
public:
    ConstantFactor(double base_lr, double factor) : lr_(base_lr * factor) {}
    double lr(int64_t) const override { return lr_; }

private:
    double lr_;
};

}  // namespace

LAB_PLUGIN(registry) {
    lab::OptionSchema tokenizer_schema;
    tokenizer_schema.boolean("uppercase", false, "upper-case ASCII letters before encoding");
    registry.add_tokenizer({"test_upper", "0.1", "test plugin: byte ids, optionally upper-cased", tokenizer_schema},
                           [](const lab::Options& opts, lab::BuildContext&) {
                               return std::make_shared<ByteTokenizer>(opts.get_bool("uppercase"));
                           });

    lab::OptionSchema schedule_schema;
    schedule_schema.real("factor", 1.0, "multiplies the optimizer's lr").range(0, 10);
    registry.add_schedule({"test_const", "0.1", "test plugin: constant lr times a factor", schedule_schema},
                          [](const lab::Options& opts, const lab::ScheduleContext& ctx) {
                              return std::make_shared<ConstantFactor>(ctx.base_lr, opts.get_float("factor"));
                          });
}
