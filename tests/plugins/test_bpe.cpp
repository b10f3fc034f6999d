// tokenizer/bpe through its plugin: the ids of every fixture text equal tiktoken's "gpt2" encoding
// (tests/fixtures/bpe, made by tools/fixtures/make_bpe_fixtures.py), decode round trips of every
// fixture text and of random byte strings (invalid UTF-8 included), special ids, every refused
// vocabulary file, and training (size reached, deterministic, save/load gives the same ids).
#include <catch2/catch.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>

#include "lab/error.h"
#include "lab/registry.h"
#include "plugin_test_support.h"
#include "test_support.h"

namespace fs = std::filesystem;
using Catch::Matchers::Contains;
using nlohmann::json;

namespace {

const fs::path kFixtures = lab_test::kFixturesDir / "bpe";
const std::string kEncoder = (lab_test::kDataDir / "gpt2" / "encoder.json").string();
const std::string kMerges = (lab_test::kDataDir / "gpt2" / "vocab.bpe").string();

std::shared_ptr<lab::Tokenizer> make_tokenizer(const std::map<std::string, std::string>& values) {
    return lab_test::make_tokenizer("bpe", values);
}

// GPT-2 tokenizers, made once (loading 50k tokens takes a moment).
const lab::Tokenizer& gpt2(bool allow_special = false) {
    static auto ordinary = make_tokenizer({{"encoder", kEncoder}, {"merges", kMerges}});
    static auto special = make_tokenizer({{"encoder", kEncoder}, {"merges", kMerges}, {"allow_special", "true"}});
    return allow_special ? *special : *ordinary;
}

std::string show(const std::vector<int32_t>& ids) {
    std::ostringstream os;
    os << "[";
    for (size_t k = 0; k < ids.size(); ++k) os << (k ? ", " : "") << ids[k];
    os << "]";
    return os.str();
}

// Encodes every record of a fixture file; returns the number of mismatches (reported, first few in full).
size_t check_fixture(const std::string& name) {
    auto rows = lab_test::read_jsonl(kFixtures / name);
    REQUIRE(rows.size() > 1);
    REQUIRE(rows[0]["records"].get<size_t>() == rows.size() - 1);
    size_t matched = 0, mismatched = 0, round_trips = 0;
    for (size_t k = 1; k < rows.size(); ++k) {
        const json& row = rows[k];
        std::string text = row["text"].get<std::string>();
        auto expected = row["ids"].get<std::vector<int32_t>>();
        bool allow_special = row.value("allow_special", false);
        auto ids = gpt2(allow_special).encode(text);
        if (ids == expected) {
            ++matched;
        } else if (++mismatched <= 5) {
            UNSCOPED_INFO(name << " record " << k << " text " << json(text).dump() << "\n  expected " << show(expected)
                               << "\n  got      " << show(ids));
        }
        if (gpt2(allow_special).decode(ids) == text) ++round_trips;
    }
    std::cout << "[bpe] " << name << ": " << matched << "/" << rows.size() - 1 << " texts give tiktoken's ids, "
              << round_trips << " decode back to the text\n";
    CHECK(round_trips == rows.size() - 1);
    return mismatched;
}

std::string gpt2_symbol_file(const std::string& merges) { return "#version: 0.2\n" + merges; }

// A small valid GPT-2-style encoder: the 256 bytes (GPT-2's spelling and order) plus `extra` tokens.
json byte_encoder(const std::vector<std::string>& extra) {
    auto gpt2_json = json::parse(lab_test::read_text(kEncoder));
    json small = json::object();
    for (const auto& [token, id] : gpt2_json.items())
        if (id.get<int>() < 256) small[token] = id;
    int next = 256;
    for (const auto& token : extra) small[token] = next++;
    return small;
}

}  // namespace

TEST_CASE("bpe: every fixture text gives tiktoken gpt2's ids", "[bpe]") {
    REQUIRE(gpt2().vocab_size() == 50257);
    size_t mismatched = 0;
    for (const char* name : {"hard_cases.jsonl", "random_unicode.jsonl", "tinyshakespeare.jsonl", "hongloumeng.jsonl",
                             "wikitext2_test.jsonl"})
        mismatched += check_fixture(name);
    REQUIRE(mismatched == 0);
}

// FNV-1a 64 of the ids as little-endian int32 bytes (as make_bpe_fixtures.py computes it).
std::string fnv1a64(const std::vector<int32_t>& ids) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (int32_t id : ids)
        for (int k = 0; k < 4; ++k) h = (h ^ ((static_cast<uint32_t>(id) >> (8 * k)) & 0xFF)) * 0x100000001B3ull;
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
    return hex;
}

TEST_CASE("bpe: the whole WikiText-2 test file in one call, encode speed (printed, not asserted)", "[bpe]") {
    std::string text = lab_test::read_text(lab_test::kDataDir / "wikitext-2" / "test.txt");
    json whole = json::parse(lab_test::read_text(kFixtures / "wikitext2_test_whole.json"));
    REQUIRE(text.size() > 1000000);
    auto fresh = make_tokenizer({{"encoder", kEncoder}, {"merges", kMerges}});
    auto t0 = std::chrono::steady_clock::now();
    auto ids = fresh->encode(text);  // cold cache
    auto t1 = std::chrono::steady_clock::now();
    auto again = fresh->encode(text);  // warm cache
    auto t2 = std::chrono::steady_clock::now();
    double cold = std::chrono::duration<double>(t1 - t0).count(), warm = std::chrono::duration<double>(t2 - t1).count();
    std::cout << "[bpe] WikiText-2 test: " << text.size() << " bytes -> " << ids.size() << " ids; cold cache "
              << cold << " s (" << text.size() / cold / 1e6 << " MB/s), warm cache " << warm << " s ("
              << text.size() / warm / 1e6 << " MB/s)\n";
    CHECK(text.size() == whole["bytes"].get<size_t>());
    CHECK(ids.size() == whole["ids"].get<size_t>());
    CHECK(fnv1a64(ids) == whole["fnv1a64"].get<std::string>());
    CHECK(again == ids);
    CHECK(fresh->decode(ids) == text);
}

TEST_CASE("bpe: special tokens, decode and invalid UTF-8", "[bpe]") {
    const auto& tok = gpt2();
    CHECK(tok.special_ids() == std::map<std::string, int32_t>{{"<|endoftext|>", 50256}});
    CHECK(tok.encode("<|endoftext|>") == std::vector<int32_t>{27, 91, 437, 1659, 5239, 91, 29});
    CHECK(gpt2(true).encode("a<|endoftext|>b") == std::vector<int32_t>{64, 50256, 65});
    CHECK(tok.decode({50256}) == "<|endoftext|>");
    CHECK(tok.encode("") == std::vector<int32_t>{});
    CHECK_THROWS_AS(tok.decode({50257}), lab::DataError);
    CHECK_THROWS_WITH(tok.decode({15496, -1}), Contains("id -1 at position 1"));

    // An invalid byte is a one-byte "other" character: it joins a run of punctuation, and splits words.
    CHECK(tok.encode("\xff") == std::vector<int32_t>{187});  // byte 0xFF is token 187 ('ÿ')
    CHECK(tok.encode("a\xff" "b") == std::vector<int32_t>{64, 187, 65});
    for (std::string bad : {std::string("\xc3"), std::string("caf\xc3"), std::string("\xe2\x82"), std::string("\xed\xa0\x80"),
                            std::string("\xc0\xaf"), std::string("\xf8\x88\x80\x80\x80"), std::string("ok\x80\x80 yes\xfe")})
        CHECK(tok.decode(tok.encode(bad)) == bad);

    std::mt19937 rng(6);
    size_t round_trips = 0;
    const size_t kStrings = 3000;
    for (size_t k = 0; k < kStrings; ++k) {
        std::string bytes(rng() % 64, '\0');
        for (char& c : bytes) {
            // Half the bytes from a small alphabet (spaces, letters, quotes) so that words and runs form.
            static const char kCommon[] = " \t\nab'sl1!\xc3\xa9\xe4\xb8\xad";
            c = (rng() % 2) ? static_cast<char>(rng() % 256) : kCommon[rng() % (sizeof(kCommon) - 1)];
        }
        auto ids = tok.encode(bytes);
        bool ok = tok.decode(ids) == bytes;
        for (int32_t id : ids) ok = ok && id >= 0 && id < 50256;
        round_trips += ok;
    }
    std::cout << "[bpe] random byte strings: " << round_trips << "/" << kStrings << " round trip\n";
    CHECK(round_trips == kStrings);
}

TEST_CASE("bpe: refused vocabulary files name the file, line or token", "[bpe]") {
    lab_test::TempDir dir;
    json good = byte_encoder({"ab", "abc"});
    auto enc = dir.write("encoder.json", good.dump());
    auto merges = dir.write("vocab.bpe", gpt2_symbol_file("a b\nab c\n"));
    auto make = [&](const fs::path& e, const fs::path& m) {
        return make_tokenizer({{"encoder", e.string()}, {"merges", m.string()}});
    };
    auto small = make(enc, merges);
    CHECK(small->vocab_size() == 258);
    CHECK(small->encode("abc abx") == std::vector<int32_t>{257, 220, 256, 87});
    CHECK(small->special_ids().empty());
    // No #version header is fine too, and CRLF lines.
    auto no_header = dir.write("noheader.bpe", "a b\r\nab c\r\n");
    CHECK(make(enc, no_header)->encode("abc") == std::vector<int32_t>{257});

    auto expect = [&](const std::string& enc_text, const std::string& merges_text, const std::string& message) {
        auto e = dir.write("bad_encoder.json", enc_text);
        auto m = dir.write("bad.bpe", merges_text);
        CHECK_THROWS_MATCHES(make(e, m), lab::DataError, Catch::Matchers::Predicate<lab::DataError>([&](const lab::DataError& err) {
            std::string what = err.what();
            bool ok = what.find(message) != std::string::npos;
            if (!ok) UNSCOPED_INFO("message: " << what << "\nexpected to contain: " << message);
            return ok;
        }));
    };
    expect("{not json", "", "bad_encoder.json' is not valid JSON");
    expect("[1, 2]", "", "must be a non-empty JSON object");
    json text_id = good;
    text_id["ab"] = "x";
    expect(text_id.dump(), "a b\n", "maps 'ab' to \"x\", not an integer id");
    json duplicate = good;
    duplicate["abc"] = 256;
    expect(duplicate.dump(), "a b\n", "gives both 'ab' and 'abc' id 256");
    json gap = good;
    gap["abc"] = 300;
    expect(gap.dump(), "a b\n", "id 300, outside [0, 258)");
    json missing_byte = good;
    missing_byte.erase("!");
    missing_byte["abc"] = 0;
    expect(missing_byte.dump(), "", "has no token for byte 33");
    json alien = good;
    alien["日本"] = 258;
    expect(alien.dump(), "a b\nab c\n", "token '日本' (id 258) is not spelled in GPT-2's byte alphabet");
    expect(good.dump(), "#version: 0.2\nab\n", "bad.bpe:2: expected two symbols");
    expect(good.dump(), "a b\nab c d\n", "bad.bpe:2: expected two symbols");
    expect(good.dump(), "a  b\n", "bad.bpe:1: expected two symbols");
    expect(good.dump(), "a b\nab zz\n", "bad.bpe:2: symbol 'zz' is not a token");
    expect(good.dump(), "a b\nab d\n", "bad.bpe:2: merging 'ab' and 'd' gives 'abd', which is not a token");
    expect(good.dump(), "a b\na b\n", "bad.bpe:2: makes 'ab', which line 1 already makes");
    expect(good.dump(), "a b\n", "token 'abc' (id 257) is neither a single byte, the result of a merge");
    CHECK_THROWS_WITH(make(dir.path / "absent.json", merges), Contains("cannot read encoder file") && Contains("absent.json"));
    CHECK_THROWS_WITH(make(enc, dir.path / "absent.bpe"), Contains("cannot read merges file") && Contains("absent.bpe"));
    CHECK_THROWS_AS(make_tokenizer({{"encoder", enc.string()}}), lab::ConfigError);
    CHECK_THROWS_AS(make_tokenizer({{"merges", merges.string()}}), lab::ConfigError);

    auto empty = make_tokenizer({});
    CHECK_FALSE(empty->ready());
    CHECK(empty->trainable());
    CHECK_THROWS_WITH(empty->encode("x"), Contains("has no vocabulary"));
}

TEST_CASE("bpe: training reaches the size, is deterministic and saves a loadable vocabulary", "[bpe]") {
    std::string corpus = lab_test::read_text(lab_test::kDataDir / "tinyshakespeare" / "input.txt");
    REQUIRE(corpus.size() > 100000);
    corpus += "<|endoftext|>";  // a document separator: never learned as text
    lab_test::TempDir dir;
    auto corpus_file = dir.write("corpus.txt", corpus);

    auto first = make_tokenizer({{"vocab_size", "1000"}});
    first->train(corpus);
    auto second = make_tokenizer({{"corpus", corpus_file.string()}, {"vocab_size", "1000"}});
    REQUIRE(first->vocab_size() == 1000);
    REQUIRE(second->vocab_size() == 1000);
    CHECK(first->special_ids() == std::map<std::string, int32_t>{{"<|endoftext|>", 999}});

    auto encoder_a = first->save(dir.path / "a");
    second->save(dir.path / "b");
    CHECK(encoder_a == dir.path / "a" / "encoder.json");
    CHECK(lab_test::read_text(dir.path / "a" / "encoder.json") == lab_test::read_text(dir.path / "b" / "encoder.json"));
    CHECK(lab_test::read_text(dir.path / "a" / "vocab.bpe") == lab_test::read_text(dir.path / "b" / "vocab.bpe"));
    auto merges_lines = lab_test::lines_of(lab_test::read_text(dir.path / "a" / "vocab.bpe"));
    CHECK(merges_lines.front() == "#version: 0.2");
    CHECK(merges_lines.size() == 1 + 1000 - 257);

    auto loaded = make_tokenizer({{"encoder", (dir.path / "a" / "encoder.json").string()},
                                  {"merges", (dir.path / "a" / "vocab.bpe").string()}});
    REQUIRE(loaded->vocab_size() == 1000);
    std::string sample = corpus.substr(5000, 20000) + " Unseen wörds 日本 \xff 123";
    auto ids = first->encode(sample);
    CHECK(loaded->encode(sample) == ids);
    CHECK(first->decode(ids) == sample);
    CHECK(ids.size() < sample.size() / 2);  // the merges compress English text
    for (int32_t id : ids) CHECK(id < 999);

    // min_frequency stops training before the target when pairs become rare.
    auto tiny = make_tokenizer({{"vocab_size", "5000"}, {"min_frequency", "3"}});
    tiny->train("low low low lower lowest newer newer wider");
    // l+o and lo+w (5 times), then e+r and ' '+low (4 times, e+r first: smaller ids); the rest twice at most.
    CHECK(tiny->vocab_size() == 256 + 4 + 1);
    CHECK(tiny->encode(" low") == std::vector<int32_t>{259});
    CHECK(tiny->encode("lower") == std::vector<int32_t>{257, 258});
}
