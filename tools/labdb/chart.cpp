// Chart layout (ranges, nice ticks, margins, legend), the SVG renderer and write_chart.
// The PNG renderer (chart_png.cpp) draws the same layout with Cairo.
#include "chart.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <sstream>

#include "lab/error.h"

namespace labdb {

namespace {

constexpr double kPad = 12;  // outer margin and the gap between blocks of the layout
constexpr int kMinWidth = 200, kMinHeight = 150, kMaxSide = 8192;

// 10^exponent, correctly rounded: both factors are exact integers as doubles for |exponent| <= 22.
double power_of_ten(int exponent) {
    if (exponent >= 0) return std::pow(10.0, exponent);
    return 1.0 / std::pow(10.0, -exponent);
}

// "1e-05" -> "1e-5", "2.0e+09" -> "2.0e9": C's exponent padding only costs room on an axis.
std::string tidy_exponent(std::string text) {
    const size_t e = text.find('e');
    if (e == std::string::npos) return text;
    std::string mantissa = text.substr(0, e);
    std::string exponent = text.substr(e + 1);
    bool negative = false;
    if (!exponent.empty() && (exponent[0] == '+' || exponent[0] == '-')) {
        negative = exponent[0] == '-';
        exponent.erase(0, 1);
    }
    exponent.erase(0, std::min(exponent.find_first_not_of('0'), exponent.size() - 1));
    return mantissa + "e" + (negative ? "-" : "") + exponent;
}

std::string format_log_label(double value) {
    char buffer[64];
    std::snprintf(buffer, sizeof buffer, "%g", value);
    return tidy_exponent(buffer);
}

size_t utf8_length(const std::string& text) {
    size_t count = 0;
    for (unsigned char c : text) count += (c & 0xC0) != 0x80;
    return count;
}

struct NiceStep {
    int multiplier;  // 1, 2, 5 or 10
    int exponent;    // step = multiplier * 10^exponent
    double step() const { return multiplier * power_of_ten(exponent); }
    // k * step, computed so that 0.1-steps give the doubles nearest to 0.3, 0.7, ... (not 3 * 0.1)
    double tick(long long k) const {
        const double units = static_cast<double>(k * multiplier);
        return exponent >= 0 ? units * power_of_ten(exponent) : units / power_of_ten(-exponent);
    }
};

NiceStep nice_step(double lo, double hi, int target_count) {
    const double raw = (hi - lo) / target_count;
    const int exponent = static_cast<int>(std::floor(std::log10(raw)));
    const double fraction = raw / power_of_ten(exponent);  // in [1, 10)
    if (fraction <= 1.0) return {1, exponent};
    if (fraction <= 2.0) return {2, exponent};
    if (fraction <= 5.0) return {5, exponent};
    return {1, exponent + 1};
}

// Ranges narrower than this (relative to their magnitude) are treated as a single value: their
// ticks would need more digits than a double holds.
bool nearly_equal(double lo, double hi) {
    return !(hi - lo > 1e-9 * std::max(std::fabs(lo), std::fabs(hi)));
}

std::string number_text(double value) {
    std::ostringstream out;
    out << value;
    return out.str();
}

}  // namespace

Rgb series_colour(size_t index) {
    // matplotlib's tab10: chosen to stay distinguishable for common colour-vision deficiencies.
    static const Rgb palette[kPaletteSize] = {
        {0x1f, 0x77, 0xb4}, {0xff, 0x7f, 0x0e}, {0x2c, 0xa0, 0x2c}, {0xd6, 0x27, 0x28}, {0x94, 0x67, 0xbd},
        {0x8c, 0x56, 0x4b}, {0xe3, 0x77, 0xc2}, {0x7f, 0x7f, 0x7f}, {0xbc, 0xbd, 0x22}, {0x17, 0xbe, 0xcf}};
    return palette[index % kPaletteSize];
}

std::vector<double> nice_ticks(double lo, double hi, int target_count) {
    if (!std::isfinite(lo) || !std::isfinite(hi) || !(lo < hi) || !std::isfinite(hi - lo) || target_count < 1)
        throw lab::DataError("nice_ticks: needs finite lo < hi and target_count >= 1, got lo=" + number_text(lo) +
                             " hi=" + number_text(hi) + " target_count=" + std::to_string(target_count) +
                             "; hint: widen a single value into a range before asking for ticks");
    const NiceStep step = nice_step(lo, hi, target_count);
    // The tolerance keeps 5.0000000001 from adding a whole extra tick beyond 5.
    const auto first = static_cast<long long>(std::floor(lo / step.step() + 1e-9));
    const auto last = static_cast<long long>(std::ceil(hi / step.step() - 1e-9));
    std::vector<double> ticks;
    for (long long k = first; k <= last; ++k) ticks.push_back(step.tick(k));
    return ticks;
}

std::string format_tick(double value, double step, double axis_magnitude) {
    if (std::fabs(value) < std::fabs(step) * 1e-6) return "0";  // no "-0" and no "1e-17" at zero
    const int step_exponent = static_cast<int>(std::floor(std::log10(std::fabs(step)) + 1e-9));
    char buffer[64];
    if (std::fabs(axis_magnitude) < 1e7 && step_exponent >= -5) {
        std::snprintf(buffer, sizeof buffer, "%.*f", std::max(0, -step_exponent), value);
        return buffer;
    }
    // One mantissa precision for the whole axis ("5.0e7", "1.0e8"), from its largest tick.
    const double magnitude = std::max(std::fabs(axis_magnitude), std::fabs(value));
    const int magnitude_exponent = static_cast<int>(std::floor(std::log10(magnitude) + 1e-9));
    const int digits = std::clamp(magnitude_exponent - step_exponent, 0, 15);
    std::snprintf(buffer, sizeof buffer, "%.*e", digits, value);
    return tidy_exponent(buffer);
}

double Axis::fraction(double value) const {
    if (log) return (std::log10(value) - std::log10(lo)) / (std::log10(hi) - std::log10(lo));
    return (value - lo) / (hi - lo);
}

Axis linear_axis(double data_lo, double data_hi, double length_px, double min_spacing_px, double char_width_px) {
    if (nearly_equal(data_lo, data_hi)) {
        const double middle = 0.5 * (data_lo + data_hi);
        const double half_width = middle == 0 ? 1.0 : std::fabs(middle) * 0.1;
        data_lo = middle - half_width;
        data_hi = middle + half_width;
    }
    int target = std::max(1, static_cast<int>(length_px / std::max(1.0, min_spacing_px)));
    Axis axis;
    while (true) {
        const std::vector<double> values = nice_ticks(data_lo, data_hi, target);
        const double step = nice_step(data_lo, data_hi, target).step();
        axis.ticks.clear();
        const double magnitude = std::max(std::fabs(values.front()), std::fabs(values.back()));
        size_t widest = 0;
        for (double value : values) {
            axis.ticks.push_back({value, format_tick(value, step, magnitude)});
            widest = std::max(widest, axis.ticks.back().label.size());
        }
        const double spacing_px = length_px / std::max<size_t>(1, values.size() - 1);
        if (target == 1 || char_width_px <= 0 || (widest + 2) * char_width_px <= spacing_px) break;
        --target;  // labels would touch: try a coarser step
    }
    axis.lo = axis.ticks.front().value;
    axis.hi = axis.ticks.back().value;
    return axis;
}

namespace {

// The 1-2-5 ladder of a log axis: index 3k + j is {1, 2, 5}[j] * 10^k.
constexpr int kLadder[3] = {1, 2, 5};

int floor_div3(int index) { return index >= 0 ? index / 3 : -((-index + 2) / 3); }

double ladder_value(int index) {
    const int decade = floor_div3(index);
    return decade >= 0 ? kLadder[index - 3 * decade] * power_of_ten(decade)
                       : kLadder[index - 3 * decade] / power_of_ten(-decade);
}

// The highest ladder index whose value is <= value (allowing for rounding in log10).
int ladder_floor(double value) {
    const int decade = static_cast<int>(std::floor(std::log10(value) + 1e-9));
    const double mantissa = value / power_of_ten(decade) * (1 + 1e-9);
    return 3 * decade + (mantissa >= 5 ? 2 : mantissa >= 2 ? 1 : 0);
}

int ladder_ceil(double value) {
    const int index = ladder_floor(value);
    return ladder_value(index) >= value * (1 - 1e-9) ? index : index + 1;
}

}  // namespace

Axis log_axis(double data_lo, double data_hi, double length_px) {
    if (!(data_lo > 0) || !(data_hi >= data_lo) || !std::isfinite(data_hi))
        throw lab::DataError("log_axis: needs 0 < lo <= hi, got lo=" + number_text(data_lo) + " hi=" + number_text(data_hi) +
                             "; hint: leave out values <= 0 on a log axis");
    data_lo = std::max(data_lo, 1e-300);
    // Ranges of two decades or more end on decades; narrower ones on 1, 2 or 5 times a power of
    // ten, so that a loss curve from 3 to 11 fills the plot instead of a tenth of 1..100.
    const bool whole_decades = std::log10(data_hi) - std::log10(data_lo) >= 2;
    int lo_index = ladder_floor(data_lo), hi_index = ladder_ceil(data_hi);
    if (whole_decades) {
        lo_index = 3 * floor_div3(lo_index);
        hi_index = 3 * floor_div3(hi_index + 2);
    }
    if (hi_index <= lo_index) {  // a single value on the ladder: one step (a decade) either side
        lo_index = whole_decades ? lo_index - 3 : lo_index - 1;
        hi_index = whole_decades ? hi_index + 3 : hi_index + 1;
    }
    Axis axis;
    axis.log = true;
    axis.lo = ladder_value(lo_index);
    axis.hi = ladder_value(hi_index);
    const double log_lo = std::log10(axis.lo), decades = std::log10(axis.hi) - log_lo;
    const double decade_px = length_px / decades;
    const auto position_px = [&](double value) { return (std::log10(value) - log_lo) / decades * length_px; };

    // Candidates: decades and the axis ends always, 2..9 times a decade when decades are tall enough.
    struct Candidate {
        double value;
        int priority;  // labelled first: ends and decades, then 5, 2, 3, the rest
    };
    std::vector<Candidate> candidates;
    for (int decade = floor_div3(lo_index); decade <= floor_div3(hi_index); ++decade) {
        for (int multiple = 1; multiple <= 9; ++multiple) {
            const double value = decade >= 0 ? multiple * power_of_ten(decade) : multiple / power_of_ten(-decade);
            if (value < axis.lo * (1 - 1e-9) || value > axis.hi * (1 + 1e-9)) continue;
            const bool end = std::fabs(value / axis.lo - 1) < 1e-9 || std::fabs(value / axis.hi - 1) < 1e-9;
            if (multiple != 1 && !end && decade_px < 60) continue;
            const int priority = multiple == 1 || end ? 0 : multiple == 5 ? 1 : multiple == 2 ? 2 : multiple == 3 ? 3 : 4;
            candidates.push_back({value, priority});
        }
    }
    // Labels go greedily by priority to ticks at least 28 px from every labelled tick; minor ticks
    // only get labels when decades are tall, else a few labelled 3s would read like decades.
    std::vector<bool> labelled(candidates.size(), false);
    std::vector<double> labelled_px;
    for (int priority = 0; priority <= (decade_px >= 150 ? 4 : 0); ++priority) {
        for (size_t i = 0; i < candidates.size(); ++i) {
            if (candidates[i].priority != priority) continue;
            const double at = position_px(candidates[i].value);
            bool room = true;
            for (double other : labelled_px) room = room && std::fabs(other - at) >= 28;
            if (!room) continue;
            labelled[i] = true;
            labelled_px.push_back(at);
        }
    }
    for (size_t i = 0; i < candidates.size(); ++i)
        axis.ticks.push_back({candidates[i].value, labelled[i] ? format_log_label(candidates[i].value) : std::string()});
    return axis;
}

bool is_drawable(const Series& series, size_t i, bool log_y) {
    const double x = series.x[i], y = series.y[i];
    return std::isfinite(x) && std::isfinite(y) && (!log_y || y > 0);
}

std::vector<std::vector<size_t>> drawable_runs(const Series& series, bool log_y, bool band) {
    if (band && series.band_lo.size() != series.x.size()) return {};
    const auto drawn = [&](size_t i) {
        if (!band) return is_drawable(series, i, log_y);
        const auto visible = [&](double y) { return std::isfinite(y) && (!log_y || y > 0); };
        return std::isfinite(series.x[i]) && visible(series.band_lo[i]) && visible(series.band_hi[i]);
    };
    std::vector<std::vector<size_t>> runs;
    bool in_run = false;
    for (size_t i = 0; i < series.x.size(); ++i) {
        if (!drawn(i)) {
            in_run = false;
            continue;
        }
        if (!in_run) runs.emplace_back();
        runs.back().push_back(i);
        in_run = true;
    }
    return runs;
}

namespace {

// The byte offset where code point `index` of `text` starts (text.size() past the end).
size_t utf8_offset(const std::string& text, size_t index) {
    size_t count = 0;
    for (size_t at = 0; at < text.size(); ++at) {
        const bool starts_char = (static_cast<unsigned char>(text[at]) & 0xC0) != 0x80;
        if (starts_char && count++ == index) return at;
    }
    return text.size();
}

}  // namespace

std::string fit_text(const std::string& text, size_t max_chars) {
    if (utf8_length(text) <= max_chars) return text;
    if (max_chars <= 3) return std::string(max_chars, '.');
    return text.substr(0, utf8_offset(text, max_chars - 3)) + "...";
}

std::string fit_text_middle(const std::string& text, size_t max_chars) {
    const size_t length = utf8_length(text);
    if (length <= max_chars) return text;
    if (max_chars <= 3) return std::string(max_chars, '.');
    const size_t head = (max_chars - 3 + 1) / 2, tail = max_chars - 3 - head;
    return text.substr(0, utf8_offset(text, head)) + "..." + text.substr(utf8_offset(text, length - tail));
}

std::string fit_width(const std::string& text, double max_px, const std::function<double(const std::string&)>& width,
                      bool middle) {
    if (width(text) <= max_px) return text;
    // Fonts are not monospaced: try shorter cuts until one fits (a label is tens of characters).
    for (size_t chars = utf8_length(text); chars-- > 0;) {
        std::string cut = middle ? fit_text_middle(text, chars) : fit_text(text, chars);
        if (width(cut) <= max_px) return cut;
    }
    return "";
}

TextMetrics fixed_width_metrics(double char_width, double text_height, double title_char_width, double title_height) {
    TextMetrics metrics;
    metrics.text_height = text_height;
    metrics.title_height = title_height;
    metrics.text_width = [char_width](const std::string& text) { return char_width * utf8_length(text); };
    metrics.title_width = [title_char_width](const std::string& text) { return title_char_width * utf8_length(text); };
    return metrics;
}

ChartLayout layout_chart(const Chart& chart, const TextMetrics& metrics) {
    if (chart.width < kMinWidth || chart.height < kMinHeight || chart.width > kMaxSide || chart.height > kMaxSide)
        throw lab::ConfigError("chart size " + std::to_string(chart.width) + "x" + std::to_string(chart.height) +
                               " is outside " + std::to_string(kMinWidth) + "x" + std::to_string(kMinHeight) + " .. " +
                               std::to_string(kMaxSide) + "x" + std::to_string(kMaxSide) +
                               "; hint: ask for a width and height within that range");
    // Data ranges over every drawable point; which series have one decides their legend text.
    double x_lo = std::numeric_limits<double>::infinity(), x_hi = -x_lo, y_lo = x_lo, y_hi = -x_lo;
    std::vector<bool> series_has_data(chart.series.size(), false);
    for (size_t s = 0; s < chart.series.size(); ++s) {
        const Series& series = chart.series[s];
        if (series.x.size() != series.y.size())
            throw lab::DataError("chart series '" + series.label + "' has " + std::to_string(series.x.size()) +
                                 " x values but " + std::to_string(series.y.size()) +
                                 " y values; hint: give one y per x, NaN where a value is missing");
        const bool has_band = !series.band_lo.empty() || !series.band_hi.empty();
        if (has_band && (series.band_lo.size() != series.x.size() || series.band_hi.size() != series.x.size()))
            throw lab::DataError("chart series '" + series.label + "' has " + std::to_string(series.x.size()) +
                                 " points but a band of " + std::to_string(series.band_lo.size()) + " low and " +
                                 std::to_string(series.band_hi.size()) +
                                 " high values; hint: give both band ends for every point, or no band");
        for (size_t i = 0; i < series.x.size(); ++i) {
            if (!is_drawable(series, i, chart.log_y)) continue;
            series_has_data[s] = true;
            x_lo = std::min(x_lo, series.x[i]);
            x_hi = std::max(x_hi, series.x[i]);
            y_lo = std::min(y_lo, series.y[i]);
            y_hi = std::max(y_hi, series.y[i]);
            if (!has_band) continue;
            for (double end : {series.band_lo[i], series.band_hi[i]}) {
                if (!std::isfinite(end) || (chart.log_y && end <= 0)) continue;
                y_lo = std::min(y_lo, end);
                y_hi = std::max(y_hi, end);
            }
        }
    }
    ChartLayout layout;
    layout.width = chart.width;
    layout.height = chart.height;
    layout.has_data = std::find(series_has_data.begin(), series_has_data.end(), true) != series_has_data.end();
    if (!layout.has_data) {
        x_lo = 0, x_hi = 1;
        y_lo = chart.log_y ? 1 : 0, y_hi = chart.log_y ? 10 : 1;
    }
    if (!std::isfinite(x_hi - x_lo) || !std::isfinite(y_hi - y_lo))
        throw lab::DataError("chart '" + chart.title + "' spans x " + number_text(x_lo) + " .. " + number_text(x_hi) +
                             ", y " + number_text(y_lo) + " .. " + number_text(y_hi) +
                             ", too wide for one axis; hint: drop the extreme points or use a log y axis");
    if (!metrics.text_width || !metrics.title_width)
        throw lab::DataError("layout_chart: the text metrics measure no text; hint: pass fixed_width_metrics(...) or "
                             "png_text_metrics()");
    const double w = chart.width, h = chart.height, text_h = metrics.text_height;
    const auto text_width = metrics.text_width, title_width = metrics.title_width;
    const double digit_width = text_width("0");  // tick labels are mostly digits

    // Vertical blocks: title, plot, x tick labels, x label.
    const bool has_title = !chart.title.empty(), has_x_label = !chart.x_label.empty();
    layout.title_center_y = kPad + metrics.title_height / 2;
    layout.plot_top = kPad + (has_title ? metrics.title_height + kPad : text_h / 2);
    const double below_plot = layout.tick_length + layout.tick_gap + text_h + (has_x_label ? kPad / 2 + text_h : 0) + kPad;
    layout.plot_height = std::max(20.0, h - layout.plot_top - below_plot);
    layout.y_axis = chart.log_y ? log_axis(y_lo, y_hi, layout.plot_height)
                                : linear_axis(y_lo, y_hi, layout.plot_height, std::max(40.0, 3 * text_h), 0);

    // Horizontal blocks: y label, y tick labels, plot, legend.
    double y_tick_width = digit_width;
    for (const Tick& tick : layout.y_axis.ticks) y_tick_width = std::max(y_tick_width, text_width(tick.label));
    const bool has_y_label = !chart.y_label.empty();
    layout.y_label_center_x = kPad + text_h / 2;
    layout.plot_left = kPad + (has_y_label ? text_h + kPad * 0.75 : 0) + y_tick_width + layout.tick_gap +
                       layout.tick_length;
    layout.y_tick_label_right = layout.plot_left - layout.tick_length - layout.tick_gap;

    std::vector<std::string> legend_labels;
    double legend_text_width = 0;
    for (size_t s = 0; s < chart.series.size(); ++s) {
        std::string label = chart.series[s].label.empty() ? "series " + std::to_string(s + 1) : chart.series[s].label;
        if (!series_has_data[s]) label += " (no data)";
        legend_text_width = std::max(legend_text_width, text_width(label));
        legend_labels.push_back(std::move(label));
    }
    // Legend rows from the top of the plot; when they do not all fit, the last row says how many are missing.
    const double row_height = 1.6 * text_h;
    const auto rows_that_fit = static_cast<size_t>(std::max(1.0, std::floor(layout.plot_height / row_height)));
    const size_t shown = legend_labels.size() > rows_that_fit ? rows_that_fit - 1 : legend_labels.size();
    if (shown < legend_labels.size()) {
        layout.legend_more = "+" + std::to_string(legend_labels.size() - shown) + " more";
        legend_text_width = std::max(legend_text_width, text_width(layout.legend_more));
    }
    // The legend takes what its widest label needs, up to 40% of the chart: labels of ablations
    // ("attention.type=sigmoid experiment.seed=2") are long, and a cut label no longer names its run.
    const double swatch_and_gap = layout.swatch_width + 6;
    legend_text_width = std::min(legend_text_width, std::max(3 * digit_width, 0.4 * w - swatch_and_gap));
    const double legend_width = legend_labels.empty() ? 0 : swatch_and_gap + legend_text_width;
    // Without a legend the right margin still holds half of the last x tick label.
    const double right_margin = legend_labels.empty() ? kPad + 3 * digit_width : legend_width + 2 * kPad;
    layout.plot_width = std::max(20.0, w - layout.plot_left - right_margin);
    layout.x_axis = linear_axis(x_lo, x_hi, layout.plot_width, std::max(60.0, 6 * digit_width), digit_width);
    layout.x_tick_label_center_y = layout.plot_bottom() + layout.tick_length + layout.tick_gap + text_h / 2;
    layout.x_label_center_y = layout.x_tick_label_center_y + text_h + kPad / 2;

    layout.title = fit_width(chart.title, w - 2 * kPad, title_width, false);
    layout.x_label = fit_width(chart.x_label, layout.plot_width, text_width, false);
    layout.y_label = fit_width(chart.y_label, layout.plot_height, text_width, false);

    layout.legend_left = layout.plot_right() + kPad;
    layout.legend_text_left = layout.legend_left + swatch_and_gap;
    layout.swatch_height = std::max(6.0, 0.75 * text_h);
    for (size_t s = 0; s < shown; ++s)
        layout.legend.push_back({fit_width(legend_labels[s], legend_text_width, text_width, true), series_colour(s),
                                 layout.plot_top + row_height * (s + 0.5)});
    layout.legend_more = fit_width(layout.legend_more, legend_text_width, text_width, false);
    layout.legend_more_center_y = layout.plot_top + row_height * (shown + 0.5);
    return layout;
}

// ---------------------------------------------------------------------------------------------
// SVG

namespace {

// The SVG is written by hand rather than through Cairo's SVG surface, which would also make both
// renderers one drawing routine: cairo-svg writes every glyph as an outline, so labels would no
// longer be text that a browser can select, a report reader can search, and a test or a diff can
// read; and `report` and `curves -o x.svg` keep working on machines without Cairo. Both renderers
// draw the same ChartLayout, so only their drawing calls differ.
//
// The viewer picks the font, so text widths are an estimate: DejaVu Sans, the first choice of
// font-family (and wider than Arial, the fallback), measured per character. The advances of ASCII
// 0x20..0x7E in thousandths of an em, unhinted, as Cairo/FreeType report them for DejaVu Sans 2.37
// (fonts-dejavu-core); any other character counts as 0.7 em.
constexpr double kSvgFont = kLabelFontPx, kSvgTitleFont = kTitleFontPx;
constexpr uint16_t kDejaVuSansAdvance[95] = {
    318, 401, 460, 838, 636, 950, 780, 275, 390, 390, 500, 838, 318, 361, 318, 337, 636, 636, 636,
    636, 636, 636, 636, 636, 636, 636, 337, 337, 838, 838, 838, 531, 1000, 684, 686, 698, 770, 632,
    575, 775, 752, 295, 295, 656, 557, 863, 748, 787, 603, 787, 695, 635, 611, 732, 684, 989, 685,
    611, 685, 390, 337, 390, 838, 500, 500, 613, 635, 550, 635, 615, 352, 635, 634, 278, 278, 579,
    278, 974, 634, 612, 635, 635, 411, 521, 392, 634, 592, 818, 592, 592, 525, 636, 337, 636, 838,
};
constexpr uint16_t kDejaVuSansBoldAdvance[95] = {
    348, 456, 521, 838, 696, 1002, 872, 306, 457, 457, 523, 838, 380, 415, 380, 365, 696, 696, 696,
    696, 696, 696, 696, 696, 696, 696, 400, 400, 838, 838, 838, 580, 1000, 774, 762, 734, 830, 683,
    683, 821, 837, 372, 372, 775, 637, 995, 837, 850, 733, 850, 770, 720, 682, 812, 774, 1103, 771,
    724, 725, 457, 365, 457, 838, 500, 500, 675, 716, 593, 716, 678, 435, 716, 712, 343, 343, 665,
    343, 1042, 712, 687, 716, 716, 493, 595, 478, 712, 652, 924, 645, 652, 582, 712, 365, 712, 838,
};

double dejavu_width(const std::string& text, const uint16_t (&advance)[95], double font_px) {
    double thousandths = 0;
    for (unsigned char c : text) {
        if ((c & 0xC0) == 0x80) continue;  // a UTF-8 continuation byte: counted with its lead byte
        thousandths += c >= 0x20 && c < 0x7F ? advance[c - 0x20] : 700;
    }
    return thousandths * font_px / 1000;
}

TextMetrics svg_text_metrics() {
    TextMetrics metrics;
    metrics.text_height = kSvgFont;
    metrics.title_height = kSvgTitleFont;
    metrics.text_width = [](const std::string& text) { return dejavu_width(text, kDejaVuSansAdvance, kSvgFont); };
    metrics.title_width = [](const std::string& text) {
        return dejavu_width(text, kDejaVuSansBoldAdvance, kSvgTitleFont);
    };
    return metrics;
}

// XML text and attribute values: the five special characters escaped, characters XML 1.0 forbids
// (C0 controls other than tab/newline) and malformed UTF-8 replaced by U+FFFD, so that any label
// from a results database keeps the document well-formed.
std::string xml_escape(const std::string& text) {
    std::string out;
    out.reserve(text.size());
    const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
    const size_t n = text.size();
    for (size_t i = 0; i < n;) {
        const unsigned char c = bytes[i];
        if (c < 0x80) {
            switch (c) {
                case '&': out += "&amp;"; break;
                case '<': out += "&lt;"; break;
                case '>': out += "&gt;"; break;
                case '"': out += "&quot;"; break;
                case '\'': out += "&apos;"; break;
                default: out += (c < 0x20 && c != '\t' && c != '\n' && c != '\r') ? "\xEF\xBF\xBD" : std::string(1, c);
            }
            ++i;
            continue;
        }
        // Length of the sequence from its lead byte; then every continuation byte must be 10xxxxxx.
        const size_t length = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        bool valid = length != 0 && i + length <= n && c != 0xC0 && c != 0xC1 && c <= 0xF4;
        for (size_t k = 1; valid && k < length; ++k) valid = (bytes[i + k] & 0xC0) == 0x80;
        if (valid) {
            out.append(text, i, length);
            i += length;
        } else {
            out += "\xEF\xBF\xBD";
            ++i;
        }
    }
    return out;
}

std::string hex_colour(Rgb colour) {
    char buffer[8];
    std::snprintf(buffer, sizeof buffer, "#%02x%02x%02x", colour.r, colour.g, colour.b);
    return buffer;
}

std::string px(double value) {
    char buffer[32];
    std::snprintf(buffer, sizeof buffer, "%.2f", value);
    std::string text = buffer;
    while (text.back() == '0') text.pop_back();
    if (text.back() == '.') text.pop_back();
    return text == "-0" ? "0" : text;
}

// The clip path needs an id; SVGs inlined into one HTML page share an id space, so the id is a hash
// of what the chart shows (identical charts may share it: their clip rectangles are the same too).
std::string clip_id(const Chart& chart) {
    uint64_t hash = 1469598103934665603ull;  // FNV-1a
    const auto mix = [&hash](const std::string& text) {
        for (unsigned char c : text) hash = (hash ^ c) * 1099511628211ull;
        hash = (hash ^ 0xff) * 1099511628211ull;
    };
    mix(chart.title + "|" + chart.x_label + "|" + chart.y_label + "|" + std::to_string(chart.width) + "x" +
        std::to_string(chart.height));
    for (const Series& series : chart.series) mix(series.label + "|" + std::to_string(series.x.size()));
    char buffer[40];
    std::snprintf(buffer, sizeof buffer, "labdb-plot-%016llx", static_cast<unsigned long long>(hash));
    return buffer;
}

// The y of a text baseline that puts the text's visual centre at center_y.
double baseline_for(double center_y, double font_size) { return center_y + 0.35 * font_size; }

void svg_text(std::ostringstream& out, double x, double center_y, const std::string& text, const char* anchor) {
    out << "<text x=\"" << px(x) << "\" y=\"" << px(baseline_for(center_y, kSvgFont)) << "\" text-anchor=\"" << anchor
        << "\">" << xml_escape(text) << "</text>\n";
}

// Polylines of one series: one per run of consecutive drawable points; a run of one point is a dot.
// Sparse series also get a marker on every point so that single evaluations stay visible.
void svg_series(std::ostringstream& out, const ChartLayout& layout, const Series& series, Rgb colour, bool log_y) {
    const std::vector<std::vector<size_t>> runs = drawable_runs(series, log_y);
    if (runs.empty()) return;
    const std::string hex = hex_colour(colour);
    out << "<g class=\"series\" stroke=\"" << hex << "\">\n";
    size_t drawable = 0;
    for (const std::vector<size_t>& run : runs) {
        drawable += run.size();
        if (run.size() == 1) {
            out << "<circle cx=\"" << px(layout.px_x(series.x[run[0]])) << "\" cy=\"" << px(layout.px_y(series.y[run[0]]))
                << "\" r=\"3\" fill=\"" << hex << "\" stroke=\"none\"/>\n";
            continue;
        }
        out << "<polyline points=\"";
        for (size_t k = 0; k < run.size(); ++k)
            out << (k ? " " : "") << px(layout.px_x(series.x[run[k]])) << "," << px(layout.px_y(series.y[run[k]]));
        out << "\"/>\n";
    }
    if (drawable <= kMarkerMaxPoints)
        for (const std::vector<size_t>& run : runs)
            for (size_t i : run)
                out << "<circle cx=\"" << px(layout.px_x(series.x[i])) << "\" cy=\"" << px(layout.px_y(series.y[i]))
                    << "\" r=\"2.5\" fill=\"" << hex << "\" stroke=\"none\"/>\n";
    out << "</g>\n";
}

// The band of one series: a polygon per run, along band_lo forwards and band_hi backwards.
void svg_band(std::ostringstream& out, const ChartLayout& layout, const Series& series, Rgb colour, bool log_y) {
    for (const std::vector<size_t>& run : drawable_runs(series, log_y, true)) {
        out << "<polygon class=\"band\" points=\"";
        for (size_t k = 0; k < run.size(); ++k)
            out << (k ? " " : "") << px(layout.px_x(series.x[run[k]])) << "," << px(layout.px_y(series.band_lo[run[k]]));
        for (size_t k = run.size(); k-- > 0;)
            out << " " << px(layout.px_x(series.x[run[k]])) << "," << px(layout.px_y(series.band_hi[run[k]]));
        out << "\" fill=\"" << hex_colour(colour) << "\" fill-opacity=\"" << px(kBandOpacity) << "\"/>\n";
    }
}

}  // namespace

std::string render_svg(const Chart& chart) {
    const ChartLayout layout = layout_chart(chart, svg_text_metrics());
    const double left = layout.plot_left, top = layout.plot_top, right = layout.plot_right(),
                 bottom = layout.plot_bottom(), center_x = left + layout.plot_width / 2;
    const std::string clip = clip_id(chart);
    std::ostringstream out;
    out << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
        << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << chart.width << "\" height=\"" << chart.height
        << "\" viewBox=\"0 0 " << chart.width << " " << chart.height << "\" font-family=\"DejaVu Sans, Arial, sans-serif\""
        << " font-size=\"" << px(kSvgFont) << "\" fill=\"#222222\">\n";
    if (!chart.title.empty()) out << "<title>" << xml_escape(chart.title) << "</title>\n";
    // Lines may reach a stroke's width past the frame (points on the axis ends), nothing further.
    out << "<defs><clipPath id=\"" << clip << "\"><rect x=\"" << px(left - 3) << "\" y=\"" << px(top - 3)
        << "\" width=\"" << px(layout.plot_width + 6) << "\" height=\"" << px(layout.plot_height + 6)
        << "\"/></clipPath></defs>\n";
    out << "<rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n";

    // Grid, then ticks and their labels; a labelled tick gets a darker grid line than a minor one.
    // crispEdges: one-pixel lines at fractional positions would otherwise blur over two pixels.
    out << "<g class=\"grid\" stroke-width=\"1\" shape-rendering=\"crispEdges\">\n";
    for (const Tick& tick : layout.x_axis.ticks) {
        const double x = layout.px_x(tick.value);
        out << "<line x1=\"" << px(x) << "\" y1=\"" << px(top) << "\" x2=\"" << px(x) << "\" y2=\"" << px(bottom)
            << "\" stroke=\"" << (tick.label.empty() ? "#f2f2f2" : "#e0e0e0") << "\"/>\n";
    }
    for (const Tick& tick : layout.y_axis.ticks) {
        const double y = layout.px_y(tick.value);
        out << "<line x1=\"" << px(left) << "\" y1=\"" << px(y) << "\" x2=\"" << px(right) << "\" y2=\"" << px(y)
            << "\" stroke=\"" << (tick.label.empty() ? "#f2f2f2" : "#e0e0e0") << "\"/>\n";
    }
    out << "</g>\n<g class=\"ticks\" stroke=\"#333333\" stroke-width=\"1\" shape-rendering=\"crispEdges\">\n";
    for (const Tick& tick : layout.x_axis.ticks) {
        const double x = layout.px_x(tick.value), length = tick.label.empty() ? 3 : layout.tick_length;
        out << "<line x1=\"" << px(x) << "\" y1=\"" << px(bottom) << "\" x2=\"" << px(x) << "\" y2=\""
            << px(bottom + length) << "\"/>\n";
    }
    for (const Tick& tick : layout.y_axis.ticks) {
        const double y = layout.px_y(tick.value), length = tick.label.empty() ? 3 : layout.tick_length;
        out << "<line x1=\"" << px(left - length) << "\" y1=\"" << px(y) << "\" x2=\"" << px(left) << "\" y2=\""
            << px(y) << "\"/>\n";
    }
    out << "</g>\n<g class=\"tick-labels\">\n";
    for (const Tick& tick : layout.x_axis.ticks)
        if (!tick.label.empty()) svg_text(out, layout.px_x(tick.value), layout.x_tick_label_center_y, tick.label, "middle");
    for (const Tick& tick : layout.y_axis.ticks)
        if (!tick.label.empty()) svg_text(out, layout.y_tick_label_right, layout.px_y(tick.value), tick.label, "end");
    out << "</g>\n";

    out << "<rect class=\"frame\" x=\"" << px(left) << "\" y=\"" << px(top) << "\" width=\"" << px(layout.plot_width)
        << "\" height=\"" << px(layout.plot_height) << "\" fill=\"none\" stroke=\"#333333\" stroke-width=\"1\""
        << " shape-rendering=\"crispEdges\"/>\n";
    out << "<g class=\"bands\" clip-path=\"url(#" << clip << ")\" stroke=\"none\">\n";
    for (size_t s = 0; s < chart.series.size(); ++s) svg_band(out, layout, chart.series[s], series_colour(s), chart.log_y);
    out << "</g>\n";
    out << "<g class=\"series-lines\" clip-path=\"url(#" << clip << ")\" fill=\"none\" stroke-width=\"2\""
        << " stroke-linejoin=\"round\" stroke-linecap=\"round\">\n";
    for (size_t s = 0; s < chart.series.size(); ++s)
        svg_series(out, layout, chart.series[s], series_colour(s), chart.log_y);
    out << "</g>\n";
    if (!layout.has_data) svg_text(out, center_x, top + layout.plot_height / 2, "no data", "middle");

    if (!layout.title.empty())
        out << "<text class=\"title\" x=\"" << px(chart.width / 2.0) << "\" y=\""
            << px(baseline_for(layout.title_center_y, kSvgTitleFont)) << "\" text-anchor=\"middle\" font-size=\""
            << px(kSvgTitleFont) << "\" font-weight=\"bold\">" << xml_escape(layout.title) << "</text>\n";
    if (!layout.x_label.empty()) {
        out << "<g class=\"x-label\">";
        svg_text(out, center_x, layout.x_label_center_y, layout.x_label, "middle");
        out << "</g>\n";
    }
    if (!layout.y_label.empty()) {
        const double x = layout.y_label_center_x, y = top + layout.plot_height / 2;
        out << "<text class=\"y-label\" x=\"" << px(x) << "\" y=\"" << px(baseline_for(y, kSvgFont))
            << "\" text-anchor=\"middle\" transform=\"rotate(-90 " << px(x) << " " << px(y) << ")\">"
            << xml_escape(layout.y_label) << "</text>\n";
    }

    out << "<g class=\"legend\">\n";
    for (const LegendRow& row : layout.legend) {
        out << "<rect x=\"" << px(layout.legend_left) << "\" y=\"" << px(row.center_y - layout.swatch_height / 2)
            << "\" width=\"" << px(layout.swatch_width) << "\" height=\"" << px(layout.swatch_height) << "\" fill=\""
            << hex_colour(row.colour) << "\"/>\n";
        svg_text(out, layout.legend_text_left, row.center_y, row.label, "start");
    }
    if (!layout.legend_more.empty())
        svg_text(out, layout.legend_text_left, layout.legend_more_center_y, layout.legend_more, "start");
    out << "</g>\n</svg>\n";
    return out.str();
}

// ---------------------------------------------------------------------------------------------
// Files

void write_chart(const Chart& chart, const std::filesystem::path& file) {
    std::string extension = file.extension().string();
    std::transform(extension.begin(), extension.end(), extension.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (extension != ".svg" && extension != ".png")
        throw lab::ConfigError("chart file '" + file.string() + "': cannot tell the format from its extension '" +
                               extension + "'; hint: name the file *.svg or *.png");
    std::string bytes;
    if (extension == ".svg") {
        bytes = render_svg(chart);
    } else {
        const std::vector<uint8_t> png = render_png(chart);
        bytes.assign(png.begin(), png.end());
    }
    // A unique temporary name in the same folder, so the rename is atomic and concurrent writers
    // (threads or processes) never share a temporary file.
    static std::atomic<unsigned> counter{0};
    std::filesystem::path temporary = file;
    temporary += ".tmp" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
    const auto fail = [&](const std::string& what, const std::string& reason) {
        std::error_code ignored;
        std::filesystem::remove(temporary, ignored);
        return lab::DataError("chart file '" + file.string() + "': " + what + ": " + reason +
                              "; hint: check that the folder exists and is writable");
    };
    {
        std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
        if (!out) throw fail("cannot create '" + temporary.string() + "'", std::strerror(errno));
        out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
        out.close();
        if (!out) throw fail("cannot write '" + temporary.string() + "'", std::strerror(errno));
    }
    std::error_code rename_error;
    std::filesystem::rename(temporary, file, rename_error);
    if (rename_error) throw fail("cannot rename '" + temporary.string() + "' to it", rename_error.message());
}

}  // namespace labdb
