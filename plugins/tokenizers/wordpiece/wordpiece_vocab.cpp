#include "wordpiece_vocab.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "bert_text.h"
#include "lab/error.h"

namespace wordpiece {

namespace {

std::string quoted(const std::filesystem::path& file) {
    std::string out(1, '\'');
    out += file.string();
    out += '\'';
    return out;
}

}  // namespace

Vocabulary Vocabulary::load(const std::filesystem::path& file) {
    std::error_code ec;
    if (std::filesystem::is_directory(file, ec))
        throw lab::DataError("tokenizer/wordpiece: vocabulary " + quoted(file) +
                             " is a folder; give the path of its vocab.txt");
    std::ifstream in(file, std::ios::binary);
    if (!in)
        throw lab::DataError("tokenizer/wordpiece: cannot read vocabulary " + quoted(file) +
                             "; check the path (BERT vocabularies come from tools/get_data.sh)");
    std::ostringstream buffer;
    buffer << in.rdbuf();
    if (in.bad())
        throw lab::DataError("tokenizer/wordpiece: reading vocabulary " + quoted(file) +
                             " failed; check that it is a readable file");
    const std::string text = buffer.str();
    if (text.empty())
        throw lab::DataError("tokenizer/wordpiece: vocabulary " + quoted(file) +
                             " is empty; give a vocab.txt with one token per line");

    Vocabulary vocab;
    std::unordered_map<std::string, size_t> line_of;  // token -> 1-based line, for duplicate errors
    size_t line_number = 0;
    for (size_t begin = 0; begin < text.size();) {
        ++line_number;
        size_t end = text.find('\n', begin);
        if (end == std::string::npos) end = text.size();
        std::string token = text.substr(begin, end - begin);
        const std::string where = "vocabulary " + quoted(file) + " line " + std::to_string(line_number);
        size_t bad = first_invalid_utf8(token);
        if (bad != std::string::npos)
            throw lab::DataError("tokenizer/wordpiece: " + where + " has " + describe_invalid_utf8(text, begin + bad) +
                                 "; the vocabulary must be UTF-8");
        if (!token.empty() && token.back() == '\r') token.pop_back();
        if (token.empty())
            throw lab::DataError("tokenizer/wordpiece: " + where +
                                 " is empty; every line is a token (its line index is its id), so remove the "
                                 "empty line or restore the token it held");
        auto [it, inserted] = line_of.emplace(token, line_number);
        if (!inserted)
            throw lab::DataError("tokenizer/wordpiece: " + where + " repeats the token '" + token + "' of line " +
                                 std::to_string(it->second) + "; a token may appear once, remove one of the lines");
        vocab.longest_ = std::max(vocab.longest_, token.size());
        vocab.ids_.emplace(token, static_cast<int32_t>(vocab.tokens_.size()));
        vocab.tokens_.push_back(std::move(token));
        begin = end + 1;
    }
    return vocab;
}

Vocabulary Vocabulary::from_tokens(std::vector<std::string> tokens, const std::string& source) {
    if (tokens.empty())
        throw lab::DataError("tokenizer/wordpiece: vocabulary from " + source + " is empty; give it some text");
    Vocabulary vocab;
    for (size_t i = 0; i < tokens.size(); ++i) {
        if (!vocab.ids_.emplace(tokens[i], static_cast<int32_t>(i)).second)
            throw lab::DataError("tokenizer/wordpiece: vocabulary from " + source + " lists '" + tokens[i] +
                                 "' twice; this is a bug in the trainer, please report it");
        vocab.longest_ = std::max(vocab.longest_, tokens[i].size());
    }
    vocab.tokens_ = std::move(tokens);
    return vocab;
}

void Vocabulary::save(const std::filesystem::path& file) const {
    std::filesystem::path tmp = file;
    tmp += ".tmp";
    {
        std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
        for (const std::string& token : tokens_) out << token << '\n';
        out.flush();
        if (!out)
            throw lab::DataError("tokenizer/wordpiece: cannot write " + quoted(tmp) +
                                 "; check that the folder is writable and the disk is not full");
    }
    std::error_code ec;
    std::filesystem::rename(tmp, file, ec);
    if (ec)
        throw lab::DataError("tokenizer/wordpiece: cannot rename " + quoted(tmp) + " to " + quoted(file) + ": " +
                             ec.message() + "; check the folder's permissions");
}

}  // namespace wordpiece
