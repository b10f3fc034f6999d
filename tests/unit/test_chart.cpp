// labdb's chart renderer: nice ticks and their labels, log axes, the layout's ranges, the SVG
// (well-formed, one polyline per run of points, bands, escaped labels) and the PNG (decoded with
// Cairo: its size, the pixels where lines, bands and legend text are, its file size), and
// write_chart.
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
#include "test_support.h"

#ifdef LABDB_HAVE_CAIRO
#include <cairo.h>
#endif

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

#ifdef LABDB_HAVE_CAIRO
// A PNG read back through Cairo's decoder, the reference the renderer's output is checked against.
struct DecodedPng {
    int width = 0, height = 0;
    std::vector<uint32_t> pixels;  // (height, width) 0xAARRGGBB, as Cairo's ARGB32/RGB24 hold them
    Rgb pixel(int x, int y) const {
        const uint32_t p = pixels.at(static_cast<size_t>(y) * width + x);
        return {static_cast<uint8_t>(p >> 16), static_cast<uint8_t>(p >> 8), static_cast<uint8_t>(p)};
    }
};

DecodedPng decode_png(const std::vector<uint8_t>& png) {
    struct Reader {
        const std::vector<uint8_t>* bytes;
        size_t at = 0;
    } reader{&png};
    const auto read = [](void* closure, unsigned char* data, unsigned int length) {
        auto* from = static_cast<Reader*>(closure);
        if (from->at + length > from->bytes->size()) return CAIRO_STATUS_READ_ERROR;
        std::memcpy(data, from->bytes->data() + from->at, length);
        from->at += length;
        return CAIRO_STATUS_SUCCESS;
    };
    cairo_surface_t* surface = cairo_image_surface_create_from_png_stream(read, &reader);
    REQUIRE(cairo_surface_status(surface) == CAIRO_STATUS_SUCCESS);
    DecodedPng decoded;
    decoded.width = cairo_image_surface_get_width(surface);
    decoded.height = cairo_image_surface_get_height(surface);
    const int stride = cairo_image_surface_get_stride(surface);
    const unsigned char* data = cairo_image_surface_get_data(surface);
    for (int y = 0; y < decoded.height; ++y)
        for (int x = 0; x < decoded.width; ++x) {
            uint32_t pixel;
            std::memcpy(&pixel, data + static_cast<size_t>(y) * stride + 4 * x, 4);
            decoded.pixels.push_back(pixel);
        }
    cairo_surface_destroy(surface);
    return decoded;
}

// Each channel within `tolerance` of the colour: anti-aliased edges blend with the background.
bool near_colour(Rgb a, Rgb b, int tolerance) {
    return std::abs(a.r - b.r) <= tolerance && std::abs(a.g - b.g) <= tolerance && std::abs(a.b - b.b) <= tolerance;
}
#endif

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
    const TextMetrics metrics = fixed_width_metrics(7, 12, 9.5, 16);
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
    CHECK(layout.legend_text_left + metrics.text_width("a") <= chart.width - 10);  // "a" and "b" fit

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
    const auto seven_px = [](const std::string& text) { return 7.0 * text.size(); };
    CHECK(fit_width("attention=flash seed=1", 7 * 12, seven_px, true) == "atten...ed=1");
    CHECK(fit_width("attention=flash seed=1", 7 * 12 + 6, seven_px, false) == "attention...");
    CHECK(fit_width("short", 35, seven_px, true) == "short");

    // Labels of an ablation fit the legend whole, at the cost of some plot width.
    Chart ablation;
    ablation.series.push_back({"attention.type=sigmoid experiment.seed=2", {0, 1}, {1, 2}});
    ablation.series.push_back({"run 1 sigmoid_s1 val/loss", {0, 1}, {2, 3}});
    const ChartLayout ablation_layout = layout_chart(ablation, fixed_width_metrics(7.3, 12, 10, 16));
    CHECK(ablation_layout.legend[0].label == "attention.type=sigmoid experiment.seed=2");
    CHECK(ablation_layout.legend[1].label == "run 1 sigmoid_s1 val/loss");
    CHECK(ablation_layout.plot_width > 0.5 * ablation.width);

    // A band widens the y range to its ends; one of the wrong length is refused.
    Chart banded;
    banded.series.push_back({"mean", {0, 1, 2}, {2, 3, 4}, {1.5, 2.5, kNaN}, {2.5, 3.5, 9.5}});
    const ChartLayout banded_layout = layout_chart(banded, metrics);
    CHECK(banded_layout.y_axis.lo <= 1.5);
    CHECK(banded_layout.y_axis.hi >= 9.5);
    CHECK(drawable_runs(banded.series[0], false, true) == std::vector<std::vector<size_t>>{{0, 1}});
    CHECK(drawable_runs(banded.series[0], false) == std::vector<std::vector<size_t>>{{0, 1, 2}});
    banded.series[0].band_hi.pop_back();
    CHECK_THROWS_WITH(layout_chart(banded, metrics), Catch::Contains("band") && Catch::Contains("mean"));
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

    // A band: one polygon per run of points with both ends, translucent, in the series' colour.
    Chart banded;
    banded.series.push_back({"mean", {0, 1, 2, 3, 4}, {2, 3, 4, 5, 6}, {1, 2, kNaN, 4, 5}, {3, 4, 5, 6, 7}});
    const std::string band_svg = render_svg(banded);
    CHECK(xml_problem(band_svg).empty());
    CHECK(count_of(band_svg, "<polygon class=\"band\"") == 2);
    CHECK(count_of(band_svg, "fill=\"#1f77b4\" fill-opacity=\"0.2\"") == 2);
    CHECK(count_of(band_svg, "<polyline") == 1);
}

TEST_CASE("render_png: a compressed PNG of the chart's size, lines and bands in their series' colours", "[chart]") {
    Chart chart;
    chart.title = "loss";
    chart.x_label = "step";
    chart.y_label = "loss";
    chart.width = 640;
    chart.height = 400;
    chart.series.push_back({"low", {0, 10, 20, 30, 40, 50}, {1, 1, 1, 1, 1, 1}});
    chart.series.push_back({"high", {0, 10, 20, 30, 40, 50}, {9, 9, 9, 9, kNaN, 9}});
    chart.series.push_back({"diagonal", {0, 50}, {2, 8}});
    chart.series.push_back({"banded", {0, 25, 50}, {5, 5, 5}, {4, 4, 4}, {6, 6, 6}});
    chart.series.push_back({"bad\x01" "byte\xFF", {}, {}});  // no data, and a label Cairo would refuse
    if (!png_charts_available()) {
        CHECK_THROWS_AS(render_png(chart), lab::ConfigError);
        CHECK_THROWS_WITH(render_png(chart), Catch::Contains(".svg") && Catch::Contains("libcairo2-dev"));
        WARN("skipped: labdb is built without Cairo, so without PNG charts");
        return;
    }
#ifdef LABDB_HAVE_CAIRO
    const std::vector<uint8_t> bytes = render_png(chart);
    REQUIRE(bytes.size() > 8);
    CHECK(std::string(bytes.begin(), bytes.begin() + 8) == std::string("\x89PNG\r\n\x1a\n", 8));
    const DecodedPng png = decode_png(bytes);
    REQUIRE(png.width == 640);
    REQUIRE(png.height == 400);

    const ChartLayout layout = layout_chart(chart, png_text_metrics());
    const Rgb white{255, 255, 255};
    CHECK(png.pixel(0, 0) == white);
    CHECK(png.pixel(639, 0) == white);
    CHECK(png.pixel(0, 399) == white);
    CHECK(png.pixel(639, 399) == white);
    const auto at = [&](double x, double y) {
        return png.pixel(static_cast<int>(std::floor(layout.px_x(x))), static_cast<int>(std::floor(layout.px_y(y))));
    };
    // A 2 px line covers the whole pixel that holds its centre: horizontal lines are exactly their colour.
    for (double x : {5.0, 15.0, 25.0, 33.0, 47.0}) {
        INFO("x=" << x);
        CHECK(at(x, 1) == series_colour(0));
        if (x < 30) CHECK(at(x, 9) == series_colour(1));
    }
    // The diagonal: next to each point on it some pixel is (nearly) its colour.
    for (double x : {10.0, 20.0, 30.0, 40.0}) {
        const double y = 2 + 6 * x / 50;
        const int px = static_cast<int>(std::floor(layout.px_x(x))), py = static_cast<int>(std::floor(layout.px_y(y)));
        bool found = false;
        for (int dy = -1; dy <= 1; ++dy)
            for (int dx = -1; dx <= 1; ++dx) found = found || near_colour(png.pixel(px + dx, py + dy), series_colour(2), 16);
        INFO("x=" << x);
        CHECK(found);
    }
    // The NaN at x = 40 breaks the line from 30 to 50: nothing of its colour at x = 35.
    for (int dy = -2; dy <= 2; ++dy) {
        const Rgb pixel = png.pixel(static_cast<int>(layout.px_x(35)), static_cast<int>(layout.px_y(9)) + dy);
        CHECK(!near_colour(pixel, series_colour(1), 60));
    }
    CHECK(at(27, 3) == white);  // plot background between the lines and grid lines
    // The band: its colour at 20% over white, between the line and the band's ends.
    const Rgb band = series_colour(3);
    const auto blend = [](uint8_t c) { return static_cast<uint8_t>(std::lround(255 * 0.8 + c * 0.2)); };
    for (double x : {8.0, 33.0}) {
        INFO("x=" << x);
        CHECK(near_colour(at(x, 4.5), {blend(band.r), blend(band.g), blend(band.b)}, 2));
        CHECK(near_colour(at(x, 5.6), {blend(band.r), blend(band.g), blend(band.b)}, 2));
        CHECK(at(x, 5) == band);
        CHECK(at(x, 6.6) == white);
    }
    for (const LegendRow& row : layout.legend) {
        const int swatch_x = static_cast<int>(layout.legend_left + layout.swatch_width / 2);
        CHECK(png.pixel(swatch_x, static_cast<int>(row.center_y)) == row.colour);
    }
    // Dark text pixels where the title is.
    bool title_ink = false;
    for (int x = 0; x < png.width; ++x) title_ink = title_ink || png.pixel(x, static_cast<int>(layout.title_center_y)).r < 0x60;
    CHECK(title_ink);

    Chart nothing;  // no series at all still makes a valid image of the requested size
    nothing.width = 300;
    nothing.height = 200;
    const DecodedPng empty = decode_png(render_png(nothing));
    CHECK(empty.width == 300);
    CHECK(empty.height == 200);
#endif
}

TEST_CASE("render_png: legend labels are whole, drawn text as wide as measured, the file small", "[chart]") {
    if (!png_charts_available()) {
        WARN("skipped: labdb is built without Cairo, so without PNG charts");
        return;
    }
#ifdef LABDB_HAVE_CAIRO
    // Labels as `curves` writes them: the bitmap font cut these to "run 1 sig...val/loss".
    Chart chart;
    chart.title = "val/loss";
    chart.x_label = "step";
    chart.y_label = "val/loss";
    const std::vector<std::string> labels = {"run 1 sigmoid_s1 val/loss", "attention.type=sigmoid experiment.seed=2",
                                             "attention.type=softmax (n=2)", "attention.type=softmax experiment.seed=1"};
    for (size_t s = 0; s < labels.size(); ++s) chart.series.push_back(loss_curve(labels[s], 10.9, 3 + 0.1 * s, 101, 20 + s));
    const TextMetrics metrics = png_text_metrics();
    const ChartLayout layout = layout_chart(chart, metrics);
    REQUIRE(layout.legend.size() == labels.size());
    const std::vector<uint8_t> bytes = render_png(chart);
    const DecodedPng png = decode_png(bytes);
    REQUIRE(png.width == 900);
    REQUIRE(png.height == 540);
    for (size_t s = 0; s < labels.size(); ++s) {
        INFO(labels[s]);
        CHECK(layout.legend[s].label == labels[s]);
        // The row's ink ends where the measured text ends (a glyph's last column may sit a pixel or two
        // inside its advance), so the label was drawn whole, in a font of that width.
        const double width = metrics.text_width(labels[s]);
        CHECK(width > 4.5 * labels[s].size());  // a real font, not a few pixels per character
        int last_ink = -1;
        const int top = static_cast<int>(layout.legend[s].center_y - 8), bottom = static_cast<int>(layout.legend[s].center_y + 8);
        for (int y = top; y <= bottom; ++y)
            for (int x = static_cast<int>(layout.legend_text_left); x < png.width; ++x)
                if (png.pixel(x, y).r < 0xa0) last_ink = std::max(last_ink, x);
        CHECK(last_ink >= layout.legend_text_left + width - 4);
        CHECK(last_ink <= layout.legend_text_left + width + 1);
        CHECK(last_ink < png.width - 4);
    }
    // The hand-written encoder stored every pixel uncompressed: 1.46 MB for 900x540.
    CHECK(bytes.size() < 200u * 1024);
#endif
}

TEST_CASE("write_chart picks the format by extension and writes atomically", "[chart]") {
    lab_test::TempDir scratch;
    Chart chart;
    chart.title = "curves";
    chart.series.push_back(loss_curve("a", 3, 1, 20, 3));
    write_chart(chart, scratch.path / "loss.svg");
    if (png_charts_available()) write_chart(chart, scratch.path / "loss.PNG");
    const std::vector<uint8_t> svg = read_bytes(scratch.path / "loss.svg");
    CHECK(std::string(svg.begin(), svg.end()) == render_svg(chart));
    if (png_charts_available()) {
        CHECK(read_bytes(scratch.path / "loss.PNG") == render_png(chart));
    } else {
        CHECK_THROWS_WITH(write_chart(chart, scratch.path / "loss.png"), Catch::Contains(".svg"));
    }
    size_t files = 0;
    for ([[maybe_unused]] const auto& entry : fs::directory_iterator(scratch.path)) ++files;
    CHECK(files == (png_charts_available() ? 2u : 1u));  // no temporary file left behind

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
    Series band = loss_curve("attention.type=softmax (n=2)", 10.9, 3.0, 101, 15);
    for (size_t i = 0; i < band.y.size(); ++i) {
        band.band_lo.push_back(band.y[i] - 0.15 - 0.002 * i);
        band.band_hi.push_back(band.y[i] + 0.15 + 0.002 * i);
    }
    chart.series.push_back(band);
    write_chart(chart, "/tmp/chart_example.svg");
    CHECK(xml_problem(render_svg(chart)).empty());
    if (!png_charts_available()) {
        WARN("skipped: the PNG examples: labdb is built without Cairo");
        return;
    }
    write_chart(chart, "/tmp/chart_example.png");
    chart.log_y = true;
    chart.title = "the same on a log axis";
    write_chart(chart, "/tmp/chart_example_log.png");
    CHECK(fs::file_size("/tmp/chart_example.png") < 200u * 1024);
}
