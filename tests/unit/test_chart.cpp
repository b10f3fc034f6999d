// labdb's chart renderer: nice ticks and their labels, log axes, the layout's ranges, the SVG
// (well-formed, one polyline per run of points, escaped labels) and the PNG (chunks, CRCs, the
// zlib stream decoded by hand, and the pixels where lines run), and write_chart.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "chart.h"
#include "lab/error.h"
#include "png.h"
#include "test_support.h"

using namespace labdb;
namespace fs = std::filesystem;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

size_t count_of(const std::string& text, const std::string& needle) {
    size_t count = 0;
    for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + needle.size())) ++count;
    return count;
}

// Checks what an XML parser would: tags nest and close in order, attribute values are quoted,
// text holds no raw '<' or '>', every '&' starts one of the five entities. Returns "" or a problem.
std::string xml_problem(const std::string& xml) {
    std::vector<std::string> open;
    size_t at = 0;
    if (xml.rfind("<?xml", 0) == 0) at = xml.find("?>") + 2;
    bool seen_root = false;
    while (at < xml.size()) {
        const size_t tag = xml.find('<', at);
        const std::string text = xml.substr(at, (tag == std::string::npos ? xml.size() : tag) - at);
        if (text.find('>') != std::string::npos) return "raw '>' in text: " + text;
        for (size_t amp = text.find('&'); amp != std::string::npos; amp = text.find('&', amp + 1)) {
            bool known = false;
            for (const char* entity : {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"})
                known = known || text.compare(amp, std::strlen(entity), entity) == 0;
            if (!known) return "bare '&' in text: " + text;
        }
        if (tag == std::string::npos) break;
        // The end of the tag: the first '>' outside a quoted attribute value.
        size_t end = tag + 1;
        char quote = 0;
        for (; end < xml.size(); ++end) {
            const char c = xml[end];
            if (quote) {
                if (c == quote) quote = 0;
                else if (c == '<') return "raw '<' in an attribute value";
            } else if (c == '"' || c == '\'') {
                quote = c;
            } else if (c == '<') {
                return "'<' inside a tag at " + std::to_string(tag);
            } else if (c == '>') {
                break;
            }
        }
        if (end >= xml.size()) return "unterminated tag at " + std::to_string(tag);
        const std::string body = xml.substr(tag + 1, end - tag - 1);
        if (body.empty()) return "empty tag";
        if (body[0] == '/') {
            const std::string name = body.substr(1);
            if (open.empty() || open.back() != name) return "</" + name + "> closes " + (open.empty() ? "nothing" : open.back());
            open.pop_back();
        } else {
            const std::string name = body.substr(0, body.find_first_of(" \t\n/"));
            if (open.empty() && seen_root) return "a second root element <" + name + ">";
            seen_root = true;
            if (body.back() != '/') open.push_back(name);
        }
        at = end + 1;
    }
    if (!open.empty()) return "<" + open.back() + "> is never closed";
    return seen_root ? "" : "no root element";
}

// ---- A PNG reader for the tests: chunks with verified CRCs, stored deflate blocks ----

uint32_t read_u32_be(const std::vector<uint8_t>& bytes, size_t at) {
    return uint32_t(bytes.at(at)) << 24 | uint32_t(bytes.at(at + 1)) << 16 | uint32_t(bytes.at(at + 2)) << 8 |
           uint32_t(bytes.at(at + 3));
}

struct Chunk {
    std::string type;
    std::vector<uint8_t> data;
};

std::vector<Chunk> read_chunks(const std::vector<uint8_t>& png) {
    const std::vector<uint8_t> signature = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    REQUIRE(png.size() >= 8);
    REQUIRE(std::vector<uint8_t>(png.begin(), png.begin() + 8) == signature);
    std::vector<Chunk> chunks;
    size_t at = 8;
    while (at < png.size()) {
        const uint32_t length = read_u32_be(png, at);
        REQUIRE(at + 12 + length <= png.size());
        Chunk chunk;
        chunk.type.assign(png.begin() + at + 4, png.begin() + at + 8);
        chunk.data.assign(png.begin() + at + 8, png.begin() + at + 8 + length);
        INFO("chunk " << chunk.type);
        CHECK(read_u32_be(png, at + 8 + length) == crc32(png.data() + at + 4, length + 4));
        chunks.push_back(std::move(chunk));
        at += 12 + length;
    }
    REQUIRE(at == png.size());
    return chunks;
}

struct DecodedPng {
    int width = 0, height = 0;
    std::vector<uint8_t> scanlines;  // (height, 1 + 3 * width): filter byte, then RGB
    Rgb pixel(int x, int y) const {
        const size_t at = static_cast<size_t>(y) * (1 + 3 * width) + 1 + 3 * x;
        return {scanlines.at(at), scanlines.at(at + 1), scanlines.at(at + 2)};
    }
};

DecodedPng decode_png(const std::vector<uint8_t>& png) {
    const std::vector<Chunk> chunks = read_chunks(png);
    REQUIRE(chunks.size() >= 3);
    REQUIRE(chunks.front().type == "IHDR");
    REQUIRE(chunks.back().type == "IEND");
    CHECK(chunks.back().data.empty());
    const std::vector<uint8_t>& header = chunks.front().data;
    REQUIRE(header.size() == 13);
    DecodedPng decoded;
    decoded.width = static_cast<int>(read_u32_be(header, 0));
    decoded.height = static_cast<int>(read_u32_be(header, 4));
    CHECK(header[8] == 8);   // bit depth
    CHECK(header[9] == 2);   // RGB
    CHECK(header[12] == 0);  // no interlace
    std::vector<uint8_t> zlib;
    for (const Chunk& chunk : chunks)
        if (chunk.type == "IDAT") zlib.insert(zlib.end(), chunk.data.begin(), chunk.data.end());
    REQUIRE(zlib.size() >= 6);
    CHECK((zlib[0] & 0x0F) == 8);                // deflate
    CHECK((zlib[0] * 256 + zlib[1]) % 31 == 0);  // header check bits
    CHECK((zlib[1] & 0x20) == 0);                // no preset dictionary
    size_t at = 2;
    bool final_block = false;
    while (!final_block) {
        REQUIRE(at + 5 <= zlib.size());
        final_block = zlib[at] & 1;
        REQUIRE(((zlib[at] >> 1) & 3) == 0);  // stored
        const unsigned length = zlib[at + 1] | zlib[at + 2] << 8, complement = zlib[at + 3] | zlib[at + 4] << 8;
        REQUIRE((length ^ 0xFFFF) == complement);
        REQUIRE(at + 5 + length <= zlib.size());
        decoded.scanlines.insert(decoded.scanlines.end(), zlib.begin() + at + 5, zlib.begin() + at + 5 + length);
        at += 5 + length;
    }
    REQUIRE(at + 4 == zlib.size());
    CHECK(read_u32_be(zlib, at) == adler32(decoded.scanlines.data(), decoded.scanlines.size()));
    REQUIRE(decoded.scanlines.size() == static_cast<size_t>(decoded.height) * (1 + 3 * decoded.width));
    for (int y = 0; y < decoded.height; ++y) CHECK(decoded.scanlines[y * (1 + 3 * decoded.width)] == 0);
    return decoded;
}

// Learning-curve-like data: a decaying loss with deterministic noise.
Series loss_curve(const std::string& label, double start, double floor, int points, unsigned seed) {
    std::mt19937 random(seed);
    std::normal_distribution<double> noise(0.0, 0.04);
    Series series{label, {}, {}};
    for (int i = 0; i < points; ++i) {
        const double step = i * 50.0;
        series.x.push_back(step);
        series.y.push_back(floor + (start - floor) * std::exp(-step / 1200.0) + noise(random));
    }
    return series;
}

std::vector<uint8_t> read_bytes(const fs::path& file) {
    std::ifstream in(file, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST_CASE("nice_ticks are 1-2-5 steps that cover the range", "[chart]") {
    CHECK(nice_ticks(0.13, 4.7, 5) == std::vector<double>{0, 1, 2, 3, 4, 5});
    CHECK(nice_ticks(0.13, 4.7, 10) == std::vector<double>{0, 0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5});
    CHECK(nice_ticks(0, 20000, 5) == std::vector<double>{0, 5000, 10000, 15000, 20000});
    CHECK(nice_ticks(-3.2, -0.4, 3) == std::vector<double>{-4, -3, -2, -1, 0});
    // Decimal steps give the doubles nearest to the decimals, not accumulated 0.1 + 0.1 + ...
    CHECK(nice_ticks(0, 0.7, 7) == std::vector<double>{0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7});

    std::mt19937 random(7);
    std::uniform_real_distribution<double> exponent(-6, 6), unit(-1, 1);
    for (int trial = 0; trial < 500; ++trial) {
        const double scale = std::pow(10.0, exponent(random));
        double lo = unit(random) * scale, hi = unit(random) * scale;
        if (lo > hi) std::swap(lo, hi);
        if (!(hi - lo > 1e-9 * scale)) continue;
        const int target = 2 + trial % 9;
        const std::vector<double> ticks = nice_ticks(lo, hi, target);
        INFO("lo=" << lo << " hi=" << hi << " target=" << target);
        REQUIRE(ticks.size() >= 2);
        CHECK(ticks.front() <= lo);
        CHECK(ticks.back() >= hi);
        CHECK(ticks.size() <= static_cast<size_t>(target) + 2);
        const double step = ticks[1] - ticks[0];
        const double mantissa = step / std::pow(10.0, std::floor(std::log10(step) + 1e-9));
        CHECK((std::fabs(mantissa - 1) < 1e-6 || std::fabs(mantissa - 2) < 1e-6 || std::fabs(mantissa - 5) < 1e-6));
        for (size_t i = 1; i < ticks.size(); ++i) CHECK(ticks[i] - ticks[i - 1] == Approx(step).epsilon(1e-6));
        // Ticks are multiples of the step, so 0 is a tick exactly when the range crosses it.
        for (double tick : ticks) CHECK(std::fabs(tick / step - std::round(tick / step)) < 1e-6);
    }
    CHECK_THROWS_AS(nice_ticks(1, 1, 5), lab::DataError);
    CHECK_THROWS_AS(nice_ticks(2, 1, 5), lab::DataError);
    CHECK_THROWS_AS(nice_ticks(0, kNaN, 5), lab::DataError);
}

TEST_CASE("tick labels use the digits the step needs", "[chart]") {
    CHECK(format_tick(0.5, 0.5, 5) == "0.5");
    CHECK(format_tick(2, 0.5, 5) == "2.0");
    CHECK(format_tick(20000, 5000, 20000) == "20000");
    CHECK(format_tick(0.30000000000000004, 0.1, 1) == "0.3");
    CHECK(format_tick(0.0, 0.1, 1) == "0");
    CHECK(format_tick(-0.0, 1, 5) == "0");
    CHECK(format_tick(1e-17, 0.1, 1) == "0");
    CHECK(format_tick(-2.5, 0.5, 5) == "-2.5");
    CHECK(format_tick(0.00015, 0.00005, 0.0002) == "0.00015");
    CHECK(format_tick(1.5e-7, 5e-8, 2e-7) == "1.5e-7");
    CHECK(format_tick(2e9, 5e8, 2e9) == "2.0e9");
    // One precision along an axis of exponents, not "5e7" next to "1.0e8".
    CHECK(format_tick(5e7, 5e7, 2e8) == "5.0e7");
    CHECK(format_tick(1e8, 5e7, 2e8) == "1.0e8");
}

TEST_CASE("axes cover single values and log ranges with decades", "[chart]") {
    const Axis constant = linear_axis(3, 3, 400, 50, 0);
    CHECK(constant.lo < 3);
    CHECK(constant.hi > 3);
    const Axis zero = linear_axis(0, 0, 400, 50, 0);
    CHECK(zero.lo < 0);
    CHECK(zero.hi > 0);
    const Axis steps = linear_axis(0, 5000, 800, 60, 12);
    CHECK(steps.lo == 0);
    CHECK(steps.hi == 5000);
    for (const Tick& tick : steps.ticks) CHECK(!tick.label.empty());
    // Labels 12 px per character must not touch: "50000" needs 7 * 12 px between ticks.
    const Axis crowded = linear_axis(0, 50000, 300, 10, 12);
    CHECK(300.0 / (crowded.ticks.size() - 1) >= 7 * 12);

    const Axis log = log_axis(0.03, 450, 400);
    CHECK(log.log);
    CHECK(log.lo == Approx(0.01));
    CHECK(log.hi == Approx(1000));
    std::vector<std::string> labels;
    for (const Tick& tick : log.ticks)
        if (!tick.label.empty()) labels.push_back(tick.label);
    CHECK(labels == std::vector<std::string>{"0.01", "0.1", "1", "10", "100", "1000"});
    CHECK(log.ticks.size() > labels.size());  // minor ticks at 2..9 on decades 80 px tall
    CHECK(log.fraction(1) == Approx(0.4));
    // Less than two decades: the ends are 1, 2 or 5 times a power of ten, labelled with the decade.
    const Axis loss = log_axis(3, 11, 400);
    CHECK(loss.lo == Approx(2));
    CHECK(loss.hi == Approx(20));
    std::vector<std::string> loss_labels;
    for (const Tick& tick : loss.ticks)
        if (!tick.label.empty()) loss_labels.push_back(tick.label);
    for (const char* label : {"2", "5", "10", "20"}) {
        INFO(label);
        CHECK(std::find(loss_labels.begin(), loss_labels.end(), label) != loss_labels.end());
    }
    for (const Tick& tick : loss.ticks) CHECK(tick.value == Approx(std::round(tick.value)));  // 2, 3, ..., 9, 10, 20
    const Axis one_value = log_axis(100, 100, 400);
    CHECK(one_value.lo == Approx(50));
    CHECK(one_value.hi == Approx(200));
    CHECK(one_value.ticks.size() >= 3);
    CHECK_THROWS_AS(log_axis(0, 1, 400), lab::DataError);
    const Axis tiny = log_axis(1e-12, 1e3, 200);
    size_t labelled = 0;
    for (const Tick& tick : tiny.ticks) labelled += !tick.label.empty();
    CHECK(labelled < 16);  // 15 decades on 200 px: every other decade or sparser
    CHECK(tiny.ticks.front().label == "1e-12");
}

TEST_CASE("the layout's ranges include every finite point and refuse bad input", "[chart]") {
    const TextMetrics metrics{7, 12, 9.5, 16};
    Chart chart;
    chart.series.push_back({"a", {0, 1, 2, 3}, {0.5, kNaN, -2.25, 7.5}});
    chart.series.push_back({"b", {kNaN, 10, 12}, {100, 3, std::numeric_limits<double>::infinity()}});
    const ChartLayout layout = layout_chart(chart, metrics);
    CHECK(layout.x_axis.lo <= 0);
    CHECK(layout.x_axis.hi >= 10);
    CHECK(layout.x_axis.hi < 20);  // the NaN x with y = 100 and the infinite y are not points
    CHECK(layout.y_axis.lo <= -2.25);
    CHECK(layout.y_axis.hi >= 7.5);
    CHECK(layout.y_axis.hi < 20);
    CHECK(layout.px_x(layout.x_axis.lo) == Approx(layout.plot_left));
    CHECK(layout.px_y(layout.y_axis.lo) == Approx(layout.plot_bottom()));
    REQUIRE(layout.legend.size() == 2);
    CHECK(layout.legend[1].colour == series_colour(1));
    CHECK(layout.plot_right() < layout.legend_left);
    CHECK(layout.legend_text_left + metrics.char_width <= chart.width - 10);  // "a" and "b" fit

    chart.log_y = true;  // y <= 0 cannot be shown on a log axis: those points are gaps
    const ChartLayout log_layout = layout_chart(chart, metrics);
    CHECK(log_layout.y_axis.lo == Approx(0.5));
    CHECK(log_layout.y_axis.hi == Approx(10));

    Chart empty;
    empty.series.push_back({"nothing yet", {}, {}});
    const ChartLayout empty_layout = layout_chart(empty, metrics);
    CHECK_FALSE(empty_layout.has_data);
    REQUIRE(empty_layout.legend.size() == 1);
    CHECK(empty_layout.legend[0].label == "nothing yet (no data)");

    Chart many;
    for (int s = 0; s < 60; ++s) many.series.push_back({"run " + std::to_string(s), {0, 1}, {s * 1.0, s + 1.0}});
    const ChartLayout many_layout = layout_chart(many, metrics);
    CHECK(many_layout.legend.size() < 60);
    CHECK(many_layout.legend_more == "+" + std::to_string(60 - many_layout.legend.size()) + " more");
    CHECK(many_layout.legend[10].colour == series_colour(0));  // the palette cycles

    Chart mismatched;
    mismatched.series.push_back({"val_loss", {1, 2, 3}, {1, 2}});
    CHECK_THROWS_WITH(layout_chart(mismatched, metrics), Catch::Contains("val_loss") && Catch::Contains("hint"));
    Chart tiny;
    tiny.width = 20;
    CHECK_THROWS_AS(layout_chart(tiny, metrics), lab::ConfigError);
    CHECK(fit_text("abcdefghij", 6) == "abc...");
    CHECK(fit_text_middle("attention=flash seed=1", 12) == "atten...ed=1");
    CHECK(fit_text_middle("short", 12) == "short");
    CHECK(fit_text("\xC3\xA9t\xC3\xA9", 3) == "\xC3\xA9t\xC3\xA9");  // code points, not bytes
}

TEST_CASE("render_svg: well-formed, one polyline per run, labelled and escaped", "[chart]") {
    Chart chart;
    chart.title = "loss <val> & \"train\" 'ok'";
    chart.x_label = "step";
    chart.y_label = "cross-entropy";
    chart.series.push_back(loss_curve("attention=<flash> & co", 4, 2, 60, 1));
    chart.series.push_back(loss_curve("baseline", 4.5, 2.3, 60, 2));
    chart.series.push_back({"empty", {}, {}});
    chart.series.push_back({"gap", {0, 100, 200, 300, 400}, {3, 3.1, kNaN, 3.2, 3.3}});
    chart.series.push_back({"single", {500}, {2.5}});
    chart.series.push_back({"bad\x01" "byte\xFF", {0, 1000}, {2.2, 2.4}});
    const std::string svg = render_svg(chart);

    CHECK(xml_problem(svg).empty());
    INFO(xml_problem(svg));
    CHECK(svg.rfind("<?xml", 0) == 0);
    CHECK(svg.find("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"900\" height=\"540\"") != std::string::npos);
    // Two curves and the two-point series: one polyline each; the gap series: two; single: a dot.
    CHECK(count_of(svg, "<polyline") == 5);
    CHECK(count_of(svg, "class=\"series\"") == 5);  // the empty series draws nothing
    CHECK(svg.find("loss &lt;val&gt; &amp; &quot;train&quot; &apos;ok&apos;") != std::string::npos);
    CHECK(svg.find("attention=&lt;flash&gt; &amp; co") != std::string::npos);
    CHECK(svg.find("<flash>") == std::string::npos);
    CHECK(svg.find(">baseline</text>") != std::string::npos);
    CHECK(svg.find(">empty (no data)</text>") != std::string::npos);
    CHECK(svg.find("bad\xEF\xBF\xBD" "byte\xEF\xBF\xBD") != std::string::npos);  // control and bad UTF-8 replaced
    CHECK(svg.find(">step</text>") != std::string::npos);
    CHECK(svg.find("rotate(-90") != std::string::npos);
    CHECK(svg.find(">cross-entropy</text>") != std::string::npos);
    CHECK(svg.find("<clipPath id=\"labdb-plot-") != std::string::npos);
    CHECK(svg.find("clip-path=\"url(#labdb-plot-") != std::string::npos);
    for (size_t s = 0; s < 4; ++s) {
        char hex[8];
        const Rgb colour = series_colour(s);
        std::snprintf(hex, sizeof hex, "#%02x%02x%02x", colour.r, colour.g, colour.b);
        CHECK(svg.find(std::string("fill=\"") + hex + "\"/>") != std::string::npos);  // legend swatch
    }
    for (const char* tick : {">0</text>", ">1000</text>", ">3000</text>", ">2.0</text>", ">4.0</text>"}) {
        INFO(tick);
        CHECK(svg.find(tick) != std::string::npos);
    }

    chart.log_y = true;
    const std::string log_svg = render_svg(chart);
    CHECK(xml_problem(log_svg).empty());
    // The curves span 2..4.5: a log axis from 2 to 5, every integer labelled on it.
    for (const char* tick : {">2</text>", ">3</text>", ">5</text>"}) {
        INFO(tick);
        CHECK(log_svg.find(tick) != std::string::npos);
    }

    Chart nothing;
    const std::string empty_svg = render_svg(nothing);
    CHECK(xml_problem(empty_svg).empty());
    CHECK(empty_svg.find(">no data</text>") != std::string::npos);
    CHECK(count_of(empty_svg, "<polyline") == 0);
}

TEST_CASE("crc32, adler32 and encode_png match the reference values", "[chart]") {
    const std::string check = "123456789";
    CHECK(crc32(reinterpret_cast<const uint8_t*>(check.data()), check.size()) == 0xCBF43926u);
    const std::string wiki = "Wikipedia";
    CHECK(adler32(reinterpret_cast<const uint8_t*>(wiki.data()), wiki.size()) == 0x11E60398u);
    // Adler-32 over more than the 5552-byte block: a = 1 + 255 n, b = sum of a, both mod 65521.
    const std::vector<uint8_t> ones(100000, 0xFF);
    uint64_t a = 1, b = 0;
    for (size_t i = 0; i < ones.size(); ++i) {
        a = (a + 0xFF) % 65521;
        b = (b + a) % 65521;
    }
    CHECK(adler32(ones.data(), ones.size()) == (b << 16 | a));

    const std::vector<uint8_t> rgb = {255, 0, 0, 0, 255, 0, 0, 0, 255, 10, 20, 30};  // 2 x 2
    const DecodedPng decoded = decode_png(encode_png(2, 2, rgb));
    CHECK(decoded.width == 2);
    CHECK(decoded.height == 2);
    CHECK(decoded.pixel(1, 0) == Rgb{0, 255, 0});
    CHECK(decoded.pixel(1, 1) == Rgb{10, 20, 30});
    CHECK_THROWS_AS(encode_png(3, 2, rgb), lab::DataError);
}

TEST_CASE("Canvas draws text in its font, '?' for what the font lacks", "[chart]") {
    Canvas canvas(40, 20, {255, 255, 255});
    const Rgb ink{0, 0, 0};
    canvas.draw_text("T", 2, 3, 1, ink);
    for (int column = 0; column < 5; ++column) CHECK(canvas.pixel(2 + column, 3) == ink);  // T's bar
    for (int row = 1; row < 7; ++row) {
        CHECK(canvas.pixel(4, 3 + row) == ink);  // its stem
        CHECK(canvas.pixel(2, 3 + row) == Rgb{255, 255, 255});
    }
    CHECK(Canvas::text_width("ab", 2) == 2 * 12 - 2);
    CHECK(Canvas::text_width("\xC3\xA9", 1) == 5);  // one code point, one glyph
    Canvas unknown(20, 10, {255, 255, 255}), question(20, 10, {255, 255, 255});
    unknown.draw_text("\xC3\xA9", 1, 1, 1, ink);
    question.draw_text("?", 1, 1, 1, ink);
    CHECK(unknown.rgb() == question.rgb());
    Canvas upwards(20, 20, {255, 255, 255});
    upwards.draw_text("T", 2, 2, 1, ink, true);
    for (int i = 0; i < 5; ++i) CHECK(upwards.pixel(2, 2 + i) == ink);  // the bar, now a column read upwards
    CHECK(upwards.pixel(2 + 3, 2 + 2) == ink);                          // the stem, now a row at T's middle
}

TEST_CASE("render_png: valid chunks and stream, lines in their series' colours", "[chart]") {
    Chart chart;
    chart.title = "loss";
    chart.x_label = "step";
    chart.y_label = "loss";
    chart.width = 640;
    chart.height = 400;
    chart.series.push_back({"low", {0, 10, 20, 30, 40, 50}, {1, 1, 1, 1, 1, 1}});
    chart.series.push_back({"high", {0, 10, 20, 30, 40, 50}, {9, 9, 9, 9, kNaN, 9}});
    chart.series.push_back({"diagonal", {0, 50}, {2, 8}});
    const DecodedPng png = decode_png(render_png(chart));
    REQUIRE(png.width == 640);
    REQUIRE(png.height == 400);

    const ChartLayout layout = layout_chart(chart, png_text_metrics(chart.width, chart.height));
    const Rgb white{255, 255, 255};
    CHECK(png.pixel(0, 0) == white);
    CHECK(png.pixel(639, 0) == white);
    CHECK(png.pixel(0, 399) == white);
    CHECK(png.pixel(639, 399) == white);
    const auto at = [&](double x, double y) {
        return png.pixel(static_cast<int>(std::floor(layout.px_x(x))), static_cast<int>(std::floor(layout.px_y(y))));
    };
    for (double x : {5.0, 15.0, 25.0, 33.0, 47.0}) {
        INFO("x=" << x);
        CHECK(at(x, 1) == series_colour(0));
        if (x < 30) CHECK(at(x, 9) == series_colour(1));
    }
    // The diagonal: some pixel next to each point on it is exactly its colour.
    for (double x : {10.0, 20.0, 30.0, 40.0}) {
        const double y = 2 + 6 * x / 50;
        const int px = static_cast<int>(std::floor(layout.px_x(x))), py = static_cast<int>(std::floor(layout.px_y(y)));
        bool found = false;
        for (int dy = -1; dy <= 1; ++dy)
            for (int dx = -1; dx <= 1; ++dx) found = found || png.pixel(px + dx, py + dy) == series_colour(2);
        INFO("x=" << x);
        CHECK(found);
    }
    CHECK(at(35, 9) != series_colour(1));  // the NaN at x = 40 breaks the line from 30 to 50
    CHECK(at(27, 3) == white);  // plot background between the lines and grid lines
    for (const LegendRow& row : layout.legend) {
        const int swatch_x = static_cast<int>(layout.legend_left + layout.swatch_width / 2);
        CHECK(png.pixel(swatch_x, static_cast<int>(row.center_y)) == row.colour);
    }
    // Some dark text pixels where the title is.
    bool title_ink = false;
    for (int x = 0; x < png.width; ++x) title_ink = title_ink || png.pixel(x, static_cast<int>(layout.title_center_y)).r < 0x40;
    CHECK(title_ink);

    Chart nothing;  // no series at all still makes a valid image of the requested size
    nothing.width = 300;
    nothing.height = 200;
    const DecodedPng empty = decode_png(render_png(nothing));
    CHECK(empty.width == 300);
    CHECK(empty.height == 200);
}

TEST_CASE("write_chart picks the format by extension and writes atomically", "[chart]") {
    lab_test::TempDir scratch;
    Chart chart;
    chart.title = "curves";
    chart.series.push_back(loss_curve("a", 3, 1, 20, 3));
    write_chart(chart, scratch.path / "loss.svg");
    write_chart(chart, scratch.path / "loss.PNG");
    const std::vector<uint8_t> svg = read_bytes(scratch.path / "loss.svg");
    CHECK(std::string(svg.begin(), svg.end()) == render_svg(chart));
    CHECK(read_bytes(scratch.path / "loss.PNG") == render_png(chart));
    size_t files = 0;
    for ([[maybe_unused]] const auto& entry : fs::directory_iterator(scratch.path)) ++files;
    CHECK(files == 2);  // no temporary file left behind

    CHECK_THROWS_AS(write_chart(chart, scratch.path / "loss.jpg"), std::runtime_error);
    CHECK_THROWS_WITH(write_chart(chart, scratch.path / "loss.jpg"),
                      Catch::Contains("loss.jpg") && Catch::Contains(".svg") && Catch::Contains(".png"));
    CHECK_THROWS_WITH(write_chart(chart, scratch.path / "loss"), Catch::Contains(".svg"));
    CHECK_THROWS_AS(write_chart(chart, scratch.path / "missing" / "loss.svg"), lab::DataError);
    CHECK_FALSE(fs::exists(scratch.path / "loss.jpg"));
}

TEST_CASE("example charts for a person to look at", "[chart]") {
    Chart chart;
    chart.title = "GPT-2 small: validation loss <ablation & seeds>";
    chart.x_label = "step";
    chart.y_label = "val_loss (nats/token)";
    chart.series.push_back(loss_curve("attention=flash seed=1", 10.9, 3.1, 101, 11));
    chart.series.push_back(loss_curve("attention=flash seed=2", 10.9, 3.15, 101, 12));
    chart.series.push_back(loss_curve("attention=vanilla", 10.9, 3.3, 101, 13));
    Series gap = loss_curve("attention=linear (crashed, resumed)", 10.9, 3.6, 101, 14);
    for (size_t i = 40; i < 50; ++i) gap.y[i] = kNaN;
    chart.series.push_back(gap);
    chart.series.push_back({"eval every 1000", {0, 1000, 2000, 3000, 4000, 5000}, {10.5, 5.1, 4.2, 3.8, 3.6, 3.5}});
    write_chart(chart, "/tmp/chart_example.svg");
    write_chart(chart, "/tmp/chart_example.png");
    chart.log_y = true;
    chart.title = "the same on a log axis";
    write_chart(chart, "/tmp/chart_example_log.png");
    CHECK(fs::file_size("/tmp/chart_example.png") > 900u * 540 * 3);
    CHECK(xml_problem(render_svg(chart)).empty());
}
