// SHA-256 against the FIPS 180-2 / NIST example vectors, padding boundary lengths, and file
// hashing (streamed in chunks) against the same digests.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <string>

#include "lab/error.h"
#include "lab/hash.h"
#include "test_support.h"

namespace fs = std::filesystem;

namespace {

void write_file(const fs::path& file, const std::string& bytes) {
    std::ofstream out(file, std::ios::binary);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    REQUIRE(out.good());
}

}  // namespace

TEST_CASE("sha256_hex matches the FIPS 180-4 example vectors", "[hash]") {
    CHECK(lab::sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(lab::sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    // 448 bits: the padding no longer fits in the first block.
    CHECK(lab::sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    CHECK(lab::sha256_hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopq"
                          "rsmnopqrstnopqrstu") ==
          "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    CHECK(lab::sha256_hex(std::string(1000000, 'a')) ==
          "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST_CASE("sha256_hex around the padding boundaries", "[hash]") {
    // Lengths where the 1-bit and the 64-bit length land at the end of a block or spill over.
    const std::pair<size_t, const char*> vectors[] = {
        {55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
        {56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
        {63, "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34"},
        {64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"},
        {65, "635361c48bb9eab14198e76ea8ab7f1a41685d6ad62aa9146d301d4f17eb0ae0"},
        {119, "31eba51c313a5c08226adf18d4a359cfdfd8d2e816b13f4af952f7ea6584dcfb"},
        {120, "2f3d335432c70b580af0e8e1b3674a7c020d683aa5f73aaaedfdc55af904c21c"},
    };
    for (const auto& [length, digest] : vectors) {
        INFO("message of " << length << " x 'a'");
        CHECK(lab::sha256_hex(std::string(length, 'a')) == digest);
    }
    // One changed byte changes the digest.
    CHECK(lab::sha256_hex("abd") != lab::sha256_hex("abc"));
}

TEST_CASE("sha256_file streams files of any size", "[hash]") {
    lab_test::TempDir scratch;

    const fs::path empty = scratch.path / "empty.bin";
    write_file(empty, "");
    CHECK(lab::sha256_file(empty) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");

    const fs::path million = scratch.path / "million_a.txt";
    write_file(million, std::string(1000000, 'a'));
    CHECK(lab::sha256_file(million) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");

    // Every byte value, 256,000 bytes: not a multiple of the read chunk, binary zeros included.
    std::string all_bytes;
    for (int repeat = 0; repeat < 1000; ++repeat) {
        for (int value = 0; value < 256; ++value) all_bytes.push_back(static_cast<char>(value));
    }
    const fs::path binary = scratch.path / "all_bytes.bin";
    write_file(binary, all_bytes);
    const std::string expected = "b57b64b198d5d59ce5a22a9b9f25e72a7d081476d432051aa923f3dbebb90934";
    CHECK(lab::sha256_hex(all_bytes) == expected);
    CHECK(lab::sha256_file(binary) == expected);
}

TEST_CASE("sha256_file refuses what it cannot read, naming it", "[hash]") {
    lab_test::TempDir scratch;
    const fs::path missing = scratch.path / "no_such_plugin.so";
    try {
        lab::sha256_file(missing);
        FAIL("hashing a missing file did not throw");
    } catch (const lab::DataError& error) {
        const std::string message = error.what();
        CHECK(message.find(missing.string()) != std::string::npos);
        CHECK(message.find("hint:") != std::string::npos);
    }
    try {
        lab::sha256_file(scratch.path);
        FAIL("hashing a directory did not throw");
    } catch (const lab::DataError& error) {
        CHECK(std::string(error.what()).find(scratch.path.string()) != std::string::npos);
    }
}
