// tokenizer/wordpiece through its plugin: the ids of every fixture text equal those of Hugging
// Face's BertTokenizer (tests/fixtures/wordpiece, made by tools/fixtures/make_wordpiece_fixtures.py
// with transformers 5.x), decode, special ids, BERT pair inputs, every refused vocabulary,
// invalid UTF-8, and training a vocabulary.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "lab/error.h"
#include "lab/registry.h"
#include "lab/sentence_pair.h"
#include "plugin_test_support.h"
#include "test_support.h"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using nlohmann::json;

namespace {

const fs::path kFixtures = lab_test::kFixturesDir / "wordpiece";
const std::string kUncased = (lab_test::kDataDir / "bert-base-uncased" / "vocab.txt").string();

std::shared_ptr<lab::Tokenizer> make_tokenizer(const std::map<std::string, std::string>& values) {
    return lab_test::make_tokenizer("wordpiece", values);
}

std::vector<int32_t> ids_of(const json& array) { return array.get<std::vector<int32_t>>(); }

std::string show(const std::vector<int32_t>& ids) {
    std::ostringstream os;
    os << "[";
    for (size_t k = 0; k < ids.size(); ++k) os << (k ? ", " : "") << ids[k];
    os << "]";
    return os.str();
}

// Tokens of `ids` one by one ("hello ##s ,"), for mismatch reports.
std::string tokens_of(const lab::Tokenizer& tok, const std::vector<int32_t>& ids) {
    std::string out;
    for (int32_t id : ids) {
        if (!out.empty()) out += ' ';
        if (id >= 0 && id < tok.vocab_size()) {
            out += tok.decode({id});
        } else {
            out += '<';
            out += std::to_string(id);
            out += '>';
        }
    }
    return out;
}

// Plugin option values (text) for a vocabulary and the options object of a fixture.
std::map<std::string, std::string> fixture_options(const std::string& vocab, const json& options) {
    std::map<std::string, std::string> values{{"vocab", (lab_test::kDataDir / vocab).string()}};
    for (const auto& [key, value] : options.items())
        values[key] = value.is_string() ? value.get<std::string>()
                      : value.is_boolean() ? (value.get<bool>() ? "true" : "false")
                                           : std::to_string(value.get<int64_t>());
    return values;
}

struct Parity {
    size_t records = 0, matching = 0, decoded = 0, decoded_matching = 0;
    std::string first_mismatch, first_decode_mismatch;
};

// Encodes every record of a fixture file and counts the ones whose ids equal the reference's.
Parity check_fixture(const std::string& name) {
    std::vector<json> rows = lab_test::read_jsonl(kFixtures / name);
    REQUIRE(rows.size() > 1);
    const json& header = rows[0];
    std::map<std::string, std::shared_ptr<lab::Tokenizer>> tokenizers;  // by vocabulary + options
    Parity p;
    for (size_t r = 1; r < rows.size(); ++r) {
        const json& row = rows[r];
        std::string vocab = row.value("vocab", header["vocab"].get<std::string>());
        json options = row.contains("options") ? row["options"] : header["options"];
        std::shared_ptr<lab::Tokenizer>& tok = tokenizers[vocab + options.dump()];
        if (!tok) tok = make_tokenizer(fixture_options(vocab, options));
        const std::string text = row["text"];
        const std::vector<int32_t> expected = ids_of(row["ids"]);
        std::vector<int32_t> got = tok->encode(text);
        ++p.records;
        if (got == expected) {
            ++p.matching;
        } else if (p.first_mismatch.empty()) {
            p.first_mismatch = name + " record " + std::to_string(r) + " (options " + options.dump() + ")\n  text: " +
                               json(text).dump() + "\n  expected: " + show(expected) + " = " +
                               tokens_of(*tok, expected) + "\n  got:      " + show(got) + " = " + tokens_of(*tok, got);
        }
        if (row.contains("decoded")) {
            ++p.decoded;
            std::string decoded = tok->decode(expected);
            if (decoded == row["decoded"].get<std::string>())
                ++p.decoded_matching;
            else if (p.first_decode_mismatch.empty())
                p.first_decode_mismatch = name + " record " + std::to_string(r) + ": decode(" + show(expected) +
                                          ")\n  expected: " + row["decoded"].dump() + "\n  got:      " +
                                          json(decoded).dump();
        }
    }
    REQUIRE(p.records == header["records"].get<size_t>());
    return p;
}

void require_parity(const std::string& name, size_t expected_records) {
    Parity p = check_fixture(name);
    WARN(name << ": " << p.matching << " of " << p.records << " lines give Hugging Face's ids"
              << (p.decoded ? ", decode " + std::to_string(p.decoded_matching) + " of " + std::to_string(p.decoded)
                            : std::string()));
    CHECK(p.records == expected_records);
    INFO("first mismatch: " << p.first_mismatch);
    CHECK(p.matching == p.records);
    INFO("first decode mismatch: " << p.first_decode_mismatch);
    CHECK(p.decoded_matching == p.decoded);
}

template <class F>
std::string error_of(F&& f) {
    try {
        f();
    } catch (const lab::DataError& e) {
        return e.what();
    }
    FAIL("expected a DataError");
    return {};
}

}  // namespace

TEST_CASE("wordpiece: all 872 SST-2 dev sentences give BertTokenizer's ids", "[wordpiece][plugins]") {
    require_parity("sst2_dev_uncased.jsonl", 872);
}

TEST_CASE("wordpiece: every non-empty WikiText-2 test line gives BertTokenizer's ids", "[wordpiece][plugins]") {
    require_parity("wikitext2_test_uncased.jsonl", 2891);
}

TEST_CASE("wordpiece: 500 lines of Hongloumeng give bert-base-chinese's ids", "[wordpiece][plugins]") {
    require_parity("hongloumeng_chinese.jsonl", 500);
}

TEST_CASE("wordpiece: hand-written hard cases give BertTokenizer's ids", "[wordpiece][plugins]") {
    // Accents, Greek/Cyrillic/Turkish case, emoji, control characters, long words, CJK, special
    // tokens in the text, and the non-default options (see make_wordpiece_fixtures.py).
    require_parity("hard_cases.jsonl", 37);
}

TEST_CASE("wordpiece: random strings over all of Unicode give BertTokenizer's ids", "[wordpiece][plugins]") {
    // Every plane, combining marks, unassigned and private-use code points, all option sets.
    require_parity("random_unicode.jsonl", 1000);
}

TEST_CASE("wordpiece: lab::encode_pair gives BertTokenizer's pair inputs", "[wordpiece][plugins]") {
    auto tok = make_tokenizer({{"vocab", kUncased}});
    lab::SpecialTokens special = lab::SpecialTokens::of(*tok, "test");
    std::vector<json> rows = lab_test::read_jsonl(kFixtures / "pairs_uncased.jsonl");
    size_t matching = 0;
    std::string first_mismatch;
    for (size_t r = 1; r < rows.size(); ++r) {
        const json& row = rows[r];
        std::string a = row["a"];
        std::string b = row["b"].is_null() ? std::string() : row["b"].get<std::string>();
        lab::EncodedPair got = lab::encode_pair(*tok, a, row["b"].is_null() ? nullptr : &b, row["max_len"], special);
        std::vector<int32_t> ids = ids_of(row["ids"]), segments = ids_of(row["segments"]);
        if (got.ids == ids && got.segments == segments) {
            ++matching;
        } else if (first_mismatch.empty()) {
            first_mismatch = "record " + std::to_string(r) + " max_len " + row["max_len"].dump() + "\n  a: " + a +
                             "\n  b: " + row["b"].dump() + "\n  expected: " + show(ids) + " segments " +
                             show(segments) + "\n  got:      " + show(got.ids) + " segments " + show(got.segments);
        }
    }
    WARN("pairs_uncased.jsonl: " << matching << " of " << rows.size() - 1 << " pair inputs equal BertTokenizer's");
    INFO("first mismatch: " << first_mismatch);
    CHECK(matching == rows.size() - 1);
}

TEST_CASE("wordpiece: special ids, vocabulary size and decode", "[wordpiece][plugins]") {
    auto tok = make_tokenizer({{"vocab", kUncased}});
    CHECK(tok->ready());
    CHECK(tok->vocab_size() == 30522);
    CHECK(tok->special_ids() ==
          std::map<std::string, int32_t>{{"[PAD]", 0}, {"[UNK]", 100}, {"[CLS]", 101}, {"[SEP]", 102}, {"[MASK]", 103}});
    auto chinese = make_tokenizer({{"vocab", (lab_test::kDataDir / "bert-base-chinese" / "vocab.txt").string()}});
    CHECK(chinese->vocab_size() == 21128);
    CHECK(chinese->special_ids() ==
          std::map<std::string, int32_t>{{"[PAD]", 0}, {"[UNK]", 100}, {"[CLS]", 101}, {"[SEP]", 102}, {"[MASK]", 103}});

    std::vector<int32_t> ids = tok->encode("Hello, unaffable world!");
    CHECK(ids == std::vector<int32_t>{7592, 1010, 14477, 20961, 3468, 2088, 999});
    // " ".join(tokens), then " ##" removed: "hello , una ##ffa ##ble world !" -> joined pieces.
    CHECK(tok->decode(ids) == "hello , unaffable world !");
    CHECK(tok->decode({101, 7592, 102}) == "[CLS] hello [SEP]");
    CHECK(tok->decode({}) == "");
    CHECK_THAT(error_of([&] { tok->decode({7592, 30522}); }), Contains("id 30522 at position 1"));
    CHECK_THAT(error_of([&] { tok->decode({-1}); }), Contains("id -1 at position 0"));
}

TEST_CASE("wordpiece: invalid UTF-8 is refused with its byte offset", "[wordpiece][plugins]") {
    auto tok = make_tokenizer({{"vocab", kUncased}});
    CHECK_THAT(error_of([&] { tok->encode("abc\xc3("); }), Contains("byte offset 3"));
    CHECK_THAT(error_of([&] { tok->encode("ok \xe2\x82"); }), Contains("byte offset 3"));        // truncated
    CHECK_THAT(error_of([&] { tok->encode("\xc0\xaf"); }), Contains("byte offset 0"));           // overlong
    CHECK_THAT(error_of([&] { tok->encode("x\xed\xa0\x80"); }), Contains("byte offset 1"));      // surrogate
    CHECK_THAT(error_of([&] { tok->encode("hello \xff world"); }), Contains("invalid UTF-8 at byte offset 6"));
    CHECK_THAT(error_of([&] { tok->train("caf\xe9"); }), Contains("byte offset 3"));
}

TEST_CASE("wordpiece: bad vocabularies are refused naming the file and line", "[wordpiece][plugins]") {
    lab_test::TempDir dir;
    auto load = [&](const std::string& name, const std::string& text) {
        fs::path file = dir.write(name, text);
        return error_of([&] { make_tokenizer({{"vocab", file.string()}}); });
    };
    std::string missing = (dir.path / "nope.txt").string();
    CHECK_THAT(error_of([&] { make_tokenizer({{"vocab", missing}}); }), Contains("cannot read vocabulary '" + missing));
    CHECK_THAT(error_of([&] { make_tokenizer({{"vocab", dir.path.string()}}); }), Contains("is a folder"));
    CHECK_THAT(load("empty.txt", ""), Contains("empty.txt' is empty"));
    CHECK_THAT(load("no_unk.txt", "[PAD]\nhello\n"), Contains("no_unk.txt' has no [UNK]"));
    std::string dup = load("dup.txt", "[UNK]\nhello\nworld\nhello\n");
    CHECK_THAT(dup, Contains("dup.txt' line 4 repeats the token 'hello' of line 2"));
    CHECK_THAT(load("gap.txt", "[UNK]\n\nhello\n"), Contains("gap.txt' line 2 is empty"));
    CHECK_THAT(load("two_newlines.txt", "[UNK]\nhello\n\n"), Contains("line 3 is empty"));
    std::string bad_utf8 = load("latin1.txt", "[UNK]\ncaf\xe9\n");
    CHECK_THAT(bad_utf8, Contains("latin1.txt' line 2"));
    CHECK_THAT(bad_utf8, Contains("invalid UTF-8 at byte offset 9"));

    // Fine: a newline after the last token or none, and "\r\n" line ends.
    for (const char* text : {"[UNK]\nhello\n", "[UNK]\nhello", "[UNK]\r\nhello\r\n"}) {
        auto tok = make_tokenizer({{"vocab", dir.write("ok.txt", text).string()}});
        CHECK(tok->vocab_size() == 2);
        CHECK(tok->encode("hello world") == std::vector<int32_t>{1, 0});
        CHECK(tok->special_ids() == std::map<std::string, int32_t>{{"[UNK]", 0}});
    }

    fs::path corpus = dir.write("corpus.txt", "some words\n");
    try {
        make_tokenizer({{"vocab", kUncased}, {"corpus", corpus.string()}});
        FAIL("vocab and corpus together must be refused");
    } catch (const lab::ConfigError& e) {
        CHECK_THAT(std::string(e.what()), Contains("not both"));
    }
}

namespace {

std::vector<std::string> sst2_dev_sentences() {
    std::vector<std::string> lines = lab_test::lines_of(lab_test::read_text(lab_test::kDataDir / "sst2" / "dev.tsv"));
    REQUIRE(lines.size() > 800);
    std::vector<std::string> sentences;
    for (size_t k = 1; k < lines.size(); ++k)
        if (!lines[k].empty()) sentences.push_back(lines[k].substr(0, lines[k].find('\t')));
    return sentences;
}

size_t wordpiece_char_count(const std::string& utf8) {
    size_t n = 0;
    for (char c : utf8) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
    return n;
}

std::vector<std::string> vocabulary_lines(const fs::path& file) {
    return lab_test::lines_of(lab_test::read_text(file));
}

}  // namespace

TEST_CASE("wordpiece: training follows WordPieceTrainer on a tiny corpus", "[wordpiece][plugins]") {
    lab_test::TempDir dir;
    // Words: ab x3, cd x1, abc x2. Specials, the alphabet by code point, then "##" pieces in the
    // order the words are met; merges: (a, ##b) 5 times -> ab, then (ab, ##c) twice -> abc; (c, ##d)
    // occurs once, below min_frequency 2, and ends training.
    auto tok = make_tokenizer({{"vocab_size", "100"}, {"min_frequency", "2"}});
    CHECK_FALSE(tok->ready());
    CHECK(tok->trainable());
    CHECK_THAT(error_of([&] { tok->encode("ab"); }), Contains("no vocabulary"));
    tok->train("ab cd ab ABC ab abc");
    std::vector<std::string> expected{"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a",  "b",
                                      "c",     "d",     "##b",   "##d",   "##c",    "ab", "abc"};
    CHECK(vocabulary_lines(tok->save(dir.path / "tiny")) == expected);

    auto stricter = make_tokenizer({{"vocab_size", "100"}, {"min_frequency", "3"}});
    stricter->train("ab cd ab ABC ab abc");
    expected.pop_back();  // abc occurs twice: below 3
    CHECK(vocabulary_lines(stricter->save(dir.path / "stricter")) == expected);

    // The target size stops it: after one merge at 13, before any at 12.
    auto small = make_tokenizer({{"vocab_size", "13"}, {"min_frequency", "0"}});
    small->train("ab cd ab ABC ab abc");
    CHECK(vocabulary_lines(small->save(dir.path / "small")) == expected);
    auto smaller = make_tokenizer({{"vocab_size", "12"}, {"min_frequency", "0"}});
    smaller->train("ab cd ab ABC ab abc");
    expected.pop_back();
    CHECK(vocabulary_lines(smaller->save(dir.path / "smaller")) == expected);

    CHECK_THAT(error_of([&] { make_tokenizer({})->train(" \n\t "); }), Contains("no words"));
}

TEST_CASE("wordpiece: a vocabulary trained on SST-2 dev", "[wordpiece][plugins]") {
    lab_test::TempDir dir;
    std::vector<std::string> sentences = sst2_dev_sentences();
    std::string corpus;
    for (const std::string& s : sentences) corpus += s + "\n";

    SECTION("the target size is reached, specials first, save and load give the same ids") {
        auto tok = make_tokenizer({{"vocab_size", "1000"}, {"min_frequency", "2"}});
        tok->train(corpus);
        CHECK(tok->vocab_size() == 1000);
        CHECK(tok->special_ids() ==
              std::map<std::string, int32_t>{{"[PAD]", 0}, {"[UNK]", 1}, {"[CLS]", 2}, {"[SEP]", 3}, {"[MASK]", 4}});
        fs::path saved = tok->save(dir.path / "run");
        CHECK(saved == dir.path / "run" / "vocab.txt");
        CHECK_FALSE(fs::exists(dir.path / "run" / "vocab.txt.tmp"));
        CHECK(vocabulary_lines(saved).size() == 1000);

        auto loaded = make_tokenizer({{"vocab", saved.string()}});
        CHECK(loaded->vocab_size() == 1000);
        size_t unknown = 0, same = 0;
        for (const std::string& s : sentences) {
            std::vector<int32_t> ids = tok->encode(s);
            same += loaded->encode(s) == ids;
            for (int32_t id : ids) unknown += id == 1;
        }
        CHECK(same == sentences.size());
        // Every character of the corpus is in the alphabet, so nothing it holds is unknown.
        CHECK(unknown == 0);

        // The `corpus` option trains the same vocabulary from a file.
        fs::path corpus_file = dir.write("corpus.txt", corpus);
        auto from_file = make_tokenizer({{"corpus", corpus_file.string()}, {"vocab_size", "1000"}});
        CHECK(vocabulary_lines(from_file->save(dir.path / "from_file")) == vocabulary_lines(saved));
    }

    SECTION("a large target ends when no pair reaches min_frequency") {
        // Letters and spaces only, so that the words are exactly the space-separated pieces.
        std::string letters = corpus;
        for (char& c : letters)
            if (c < 'a' || c > 'z') c = ' ';
        std::map<std::string, int64_t> word_counts;
        std::istringstream words(letters);
        for (std::string w; words >> w;) ++word_counts[w];

        auto tok = make_tokenizer({{"vocab_size", "100000"}, {"min_frequency", "5"}});
        tok->train(letters);
        CHECK(tok->vocab_size() < 100000);
        auto looser = make_tokenizer({{"vocab_size", "100000"}, {"min_frequency", "2"}});
        looser->train(letters);
        CHECK(looser->vocab_size() > tok->vocab_size());

        // Every merged token was a pair seen at least min_frequency times, so its text occurs at
        // least that often where it can stand: at the start of words, or inside them for "##".
        size_t merged = 0, rare = 0;
        std::string first_rare;
        for (const std::string& token : vocabulary_lines(tok->save(dir.path / "min5"))) {
            bool inside = token.rfind("##", 0) == 0 && token.size() > 2;
            std::string text = inside ? token.substr(2) : token;
            if (text.size() < 2 || text.front() == '[') continue;  // alphabet, "##c", specials
            ++merged;
            int64_t occurrences = 0;
            for (const auto& [w, count] : word_counts)
                for (size_t i = inside ? 1 : 0; i + text.size() <= w.size() && (inside || i == 0); ++i)
                    occurrences += w.compare(i, text.size(), text) == 0 ? count : 0;
            if (occurrences < 5 && rare++ == 0) first_rare = token + " occurs " + std::to_string(occurrences) + " times";
        }
        CHECK(merged > 100);
        INFO(first_rare);
        CHECK(rare == 0);
    }
}

TEST_CASE("wordpiece: training learns what Hugging Face's WordPieceTrainer learns", "[wordpiece][plugins]") {
    // The reference: every vocabulary tokenizers' WordPieceTrainer learned on the same sentences
    // with the same settings in 30 runs. It meets words in hash-map order, so its runs break ties
    // differently and disagree (by up to ~44 of 1000 tokens); the same algorithm, deterministic,
    // must learn one of them (within a few tokens), in the same layout.
    std::ifstream in(kFixtures / "trained_sst2_dev.json");
    REQUIRE(in);
    json fixture = json::parse(in);
    std::string corpus;
    for (const std::string& s : sst2_dev_sentences()) corpus += s + "\n";
    auto tok = make_tokenizer({{"vocab_size", "1000"}, {"min_frequency", "2"}});
    tok->train(corpus);
    lab_test::TempDir dir;
    std::vector<std::string> ours = vocabulary_lines(tok->save(dir.path));
    REQUIRE(ours.size() == 1000);
    std::set<std::string> ours_set(ours.begin(), ours.end());

    auto single_characters = [](const std::vector<std::string>& tokens) {
        std::vector<std::string> out;
        for (const std::string& t : tokens)
            if (wordpiece_char_count(t) == 1) out.push_back(t);
        return out;
    };
    size_t closest = ours.size(), closest_runs = 0;
    std::vector<std::string> only_ours, only_theirs;
    for (const json& vocabulary : fixture["vocabularies"]) {
        std::vector<std::string> theirs = vocabulary["tokens"];
        REQUIRE(theirs.size() == 1000);
        CHECK(std::vector<std::string>(ours.begin(), ours.begin() + 5) ==
              std::vector<std::string>(theirs.begin(), theirs.begin() + 5));
        CHECK(single_characters(ours) == single_characters(theirs));  // the alphabet, same ids
        std::set<std::string> theirs_set(theirs.begin(), theirs.end());
        std::vector<std::string> mine, other;
        for (const std::string& t : ours_set)
            if (!theirs_set.count(t)) mine.push_back(t);
        for (const std::string& t : theirs_set)
            if (!ours_set.count(t)) other.push_back(t);
        if (mine.size() < closest) {
            closest = mine.size();
            closest_runs = vocabulary["runs"];
            only_ours = mine;
            only_theirs = other;
        }
    }
    WARN("trained on SST-2 dev: " << ours.size() - closest << " of " << ours.size()
                                  << " tokens in the closest of WordPieceTrainer's " << fixture["vocabularies"].size()
                                  << " vocabularies (learned in " << closest_runs << " of " << fixture["runs"]
                                  << " runs); only ours: " << lab::join(only_ours, " ")
                                  << "; only theirs: " << lab::join(only_theirs, " "));
    CHECK(closest <= 5);
}
