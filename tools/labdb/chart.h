// Line charts of learning curves for `labdb curves` and `labdb report`, written as SVG or PNG.
//
// A Chart is a list of Series (x in order, y with NaN marking a gap, optionally a shaded band
// around y) plus a title and axis labels. Both renderers share one layout (layout_chart): the same
// margins, axis ranges, "nice" ticks and legend rows, so an SVG and a PNG of the same chart look
// alike. The layout only needs to know how wide and tall text is, which each renderer states in
// TextMetrics: the PNG renderer measures its font (Cairo), the SVG one estimates the viewer's.
//
// Axis ranges always include every finite point (on a log axis: every point with y > 0; the others
// are drawn as gaps). A linear axis ends on ticks spaced 1, 2 or 5 times a power of ten; a log axis
// ends on decades, or on 1, 2 or 5 times a power of ten when the data span less than two decades.
// A single point or a constant series gets a small range around its value; a chart
// without any finite point still gets axes and a legend (entries marked "(no data)").
#pragma once
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace labdb {

struct Series {
    std::string label;
    std::vector<double> x, y;  // (N) each; points in x order; a NaN y is a gap in the line
    // Empty, or (N) each: a band shaded from band_lo to band_hi (the spread of a group of runs);
    // a point whose band ends are not drawable is a gap in the band.
    std::vector<double> band_lo = {}, band_hi = {};
};

struct Chart {
    std::string title, x_label, y_label;
    std::vector<Series> series;
    bool log_y = false;
    int width = 900, height = 540;  // pixels; at least 200 x 150, at most 8192 x 8192
};

// A complete standalone SVG document (UTF-8; every label is XML-escaped). Needs no library.
std::string render_svg(const Chart& chart);
// Whether this build draws PNG charts: labdb is built with Cairo when CMake finds it.
bool png_charts_available();
// A complete PNG file (compressed, by Cairo's writer) of width x height, anti-aliased lines and
// text in DejaVu Sans. Throws lab::ConfigError when png_charts_available() is false.
std::vector<uint8_t> render_png(const Chart& chart);
// Writes render_svg or render_png by the file's extension (.svg or .png, any case) to a temporary
// name beside `file`, then renames it, so a reader never sees half a chart. Throws a
// std::runtime_error (lab::ConfigError for an unknown extension or a PNG without Cairo,
// lab::DataError when the file cannot be written) that names the file.
void write_chart(const Chart& chart, const std::filesystem::path& file);

// Text sizes of both renderers, in pixels: labels, ticks and legend; the (bold) title.
inline constexpr double kLabelFontPx = 12, kTitleFontPx = 16;

// ---- Pieces shared by the two renderers, public so that tests can check them directly ----

struct Rgb {
    uint8_t r = 0, g = 0, b = 0;
    friend bool operator==(const Rgb&, const Rgb&) = default;
};
// The colour of the index-th series: ten well separated colours (the "tab10" palette), cycling.
Rgb series_colour(size_t index);
constexpr size_t kPaletteSize = 10;

// Tick values k * step (step = 1, 2 or 5 times a power of ten) from the largest tick <= lo to the
// smallest tick >= hi, about target_count intervals in all. Needs finite lo < hi, target_count >= 1.
std::vector<double> nice_ticks(double lo, double hi, int target_count);
// The label of a linear tick on an axis whose largest tick magnitude is axis_magnitude: as few
// decimals as the step needs ("0.5", "20000"); exponent form with one mantissa precision for the
// whole axis ("5.0e7", "1.5e8"; "1.5e-7") for very large values or very small steps; never "-0".
std::string format_tick(double value, double step, double axis_magnitude);

struct Tick {
    double value = 0;
    std::string label;  // empty for an unlabelled (minor) tick
};

struct Axis {
    double lo = 0, hi = 1;  // the ends of the axis in data units (lo < hi; both > 0 when log)
    bool log = false;
    std::vector<Tick> ticks;
    // Where `value` lies along the axis: 0 at lo, 1 at hi (in log10 space on a log axis).
    double fraction(double value) const;
};

// A linear axis covering [data_lo, data_hi] (which may be equal) along `length_px` pixels: ticks at
// least ~min_spacing_px apart, fewer if labels `char_width_px` per character would touch.
Axis linear_axis(double data_lo, double data_hi, double length_px, double min_spacing_px, double char_width_px);
// A log axis covering [data_lo, data_hi] (0 < data_lo <= data_hi): from decade to decade when the
// data span two decades or more, else from 1, 2 or 5 times a power of ten to the next such value
// at or above data_hi. Ticks at decades and the ends, and at 2..9 times each decade when decades
// are at least 60 px tall; labels on decades and ends first, then (when decades are at least
// 150 px tall) on 5, 2, 3 and the rest, wherever a label keeps 28 px from those already placed.
Axis log_axis(double data_lo, double data_hi, double length_px);

// How big each renderer draws its text, in pixels.
struct TextMetrics {
    double text_height = kLabelFontPx;   // height of one line of tick, legend and axis-label text
    double title_height = kTitleFontPx;  // the same for the title
    std::function<double(const std::string&)> text_width = {};   // advance of a text in the label font
    std::function<double(const std::string&)> title_width = {};  // the same in the title font
};
// Metrics of a font whose characters (UTF-8 code points) all advance alike: simple numbers for
// tests of the layout. (The SVG renderer estimates DejaVu Sans per character.)
TextMetrics fixed_width_metrics(double char_width, double text_height, double title_char_width, double title_height);
// The metrics render_png draws with, measured with Cairo. Throws like render_png without Cairo.
TextMetrics png_text_metrics();

struct LegendRow {
    std::string label;  // already shortened to fit the legend column
    Rgb colour;
    double center_y;  // vertical centre of the row
};

// Every position a renderer needs, in pixels from the top-left corner (pixel (i, j) covers
// [i, i+1) x [j, j+1)). Texts are given by the centre of their box unless said otherwise.
struct ChartLayout {
    int width = 0, height = 0;
    double plot_left = 0, plot_top = 0, plot_width = 0, plot_height = 0;
    Axis x_axis, y_axis;
    double tick_length = 5, tick_gap = 4;  // tick marks point outwards; labels sit tick_gap beyond
    std::string title, x_label, y_label;   // shortened to fit; empty when the chart has none
    double title_center_y = 0, x_label_center_y = 0, y_label_center_x = 0;  // y label reads upwards
    double x_tick_label_center_y = 0;  // x tick labels centred under their tick
    double y_tick_label_right = 0;     // y tick labels right-aligned here, centred on their tick
    double legend_left = 0, swatch_width = 16, swatch_height = 10, legend_text_left = 0;
    std::vector<LegendRow> legend;  // one row per series, or as many as fit and a "+N more" row
    std::string legend_more;        // "+N more" when rows were left out, else empty
    double legend_more_center_y = 0;
    bool has_data = false;          // false when no series has a drawable point

    double px_x(double x) const { return plot_left + x_axis.fraction(x) * plot_width; }
    double px_y(double y) const { return plot_top + (1.0 - y_axis.fraction(y)) * plot_height; }
    double plot_right() const { return plot_left + plot_width; }
    double plot_bottom() const { return plot_top + plot_height; }
};

// Checks the chart (sizes, x/y lengths) and lays it out. Throws lab::ConfigError / lab::DataError.
ChartLayout layout_chart(const Chart& chart, const TextMetrics& metrics);

// Whether point i of a series is drawn: finite x and y, and y > 0 on a log axis.
bool is_drawable(const Series& series, size_t i, bool log_y);
// The runs of consecutive drawable points of a series, as indices: a line each (a run of one
// point is drawn as a dot). With `band`, the runs of points whose x and both band ends are
// drawable instead: a shaded polygon each (none when the series has no band).
std::vector<std::vector<size_t>> drawable_runs(const Series& series, bool log_y, bool band = false);
// Series with at most this many drawable points get a marker on every point, so that single
// evaluations stay visible.
inline constexpr size_t kMarkerMaxPoints = 25;
// How opaque a band's fill is, so that the lines and bands of other series show through it.
inline constexpr double kBandOpacity = 0.2;

// `text` cut to at most max_chars characters (UTF-8 code points), ending in "..." when cut.
std::string fit_text(const std::string& text, size_t max_chars);
// The same, cut in the middle ("attentio...seed=1"): legend labels often differ only at their end.
std::string fit_text_middle(const std::string& text, size_t max_chars);
// The longest fit_text (or, with `middle`, fit_text_middle) of `text` whose width is at most max_px.
std::string fit_width(const std::string& text, double max_px, const std::function<double(const std::string&)>& width,
                      bool middle);

}  // namespace labdb
