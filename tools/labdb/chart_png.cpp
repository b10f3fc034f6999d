// render_png: the layout of chart.cpp drawn with Cairo (anti-aliased lines, DejaVu Sans text
// through Cairo's toy text API) and written with Cairo's PNG writer. labdb is built with Cairo
// when CMake finds it (tools/labdb/CMakeLists.txt defines LABDB_HAVE_CAIRO); without it this file
// only refuses, and charts are SVG only.
#include "chart.h"

#include "lab/error.h"

#ifdef LABDB_HAVE_CAIRO

#include <cairo.h>

#include <cmath>
#include <memory>
#include <numbers>

namespace labdb {

namespace {

constexpr const char* kFontFamily = "DejaVu Sans";  // Debian's fonts-dejavu-core; fontconfig substitutes otherwise
constexpr Rgb kWhite{255, 255, 255}, kInk{0x22, 0x22, 0x22}, kFrame{0x33, 0x33, 0x33};
constexpr Rgb kGrid{0xe0, 0xe0, 0xe0}, kMinorGrid{0xf2, 0xf2, 0xf2};

using Surface = std::unique_ptr<cairo_surface_t, decltype(&cairo_surface_destroy)>;
using Context = std::unique_ptr<cairo_t, decltype(&cairo_destroy)>;

void check(cairo_status_t status, const std::string& what) {
    if (status != CAIRO_STATUS_SUCCESS)
        throw lab::DataError("PNG chart: " + what + " failed: " + cairo_status_to_string(status) +
                             "; hint: a chart within 8192x8192 needs about 270 MB at most; check the free memory");
}

void set_colour(cairo_t* cr, Rgb colour, double alpha = 1.0) {
    cairo_set_source_rgba(cr, colour.r / 255.0, colour.g / 255.0, colour.b / 255.0, alpha);
}

void use_font(cairo_t* cr, bool title) {
    cairo_select_font_face(cr, kFontFamily, CAIRO_FONT_SLANT_NORMAL,
                           title ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
    cairo_set_font_size(cr, title ? kTitleFontPx : kLabelFontPx);
}

double advance(cairo_t* cr, const std::string& text) {
    cairo_text_extents_t extents;
    cairo_text_extents(cr, text.c_str(), &extents);
    return extents.x_advance;
}

Context new_context(cairo_surface_t* surface) {
    Context cr(cairo_create(surface), cairo_destroy);
    check(cairo_status(cr.get()), "creating a drawing context");
    return cr;
}

// Bytes that are not UTF-8 (or are C0 controls) become U+FFFD: Cairo draws nothing of a string
// with one bad byte, and the SVG renderer shows the same replacement character.
std::string valid_utf8(const std::string& text) {
    std::string out;
    const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
    for (size_t i = 0, n = text.size(); i < n;) {
        const unsigned char c = bytes[i];
        const size_t length = c < 0x80 ? 1 : (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
        bool valid = length != 0 && i + length <= n && c != 0xC0 && c != 0xC1 && c <= 0xF4 && (c >= 0x20 || c == '\t');
        for (size_t k = 1; valid && k < length; ++k) valid = (bytes[i + k] & 0xC0) == 0x80;
        out += valid ? text.substr(i, length) : "\xEF\xBF\xBD";
        i += valid ? length : 1;
    }
    return out;
}

// Text with its visual centre at center_y, as the SVG's baseline rule puts it; `anchor` -1 puts
// its left edge at x, 0 its middle, +1 its right edge.
void draw_text(cairo_t* cr, const std::string& raw, double x, double center_y, int anchor, bool title = false) {
    const std::string text = valid_utf8(raw);
    use_font(cr, title);
    const double width = advance(cr, text), size = title ? kTitleFontPx : kLabelFontPx;
    cairo_move_to(cr, anchor < 0 ? x : anchor > 0 ? x - width : x - width / 2, center_y + 0.35 * size);
    cairo_show_text(cr, text.c_str());
}

// A one-pixel line on the pixel column (or row) that holds the coordinate, never blurred over two.
void crisp_line(cairo_t* cr, double x0, double y0, double x1, double y1, Rgb colour) {
    const bool vertical = x0 == x1;
    if (vertical) x0 = x1 = std::floor(x0) + 0.5;
    else y0 = y1 = std::floor(y0) + 0.5;
    set_colour(cr, colour);
    cairo_set_line_width(cr, 1);
    cairo_move_to(cr, x0, y0);
    cairo_line_to(cr, x1, y1);
    cairo_stroke(cr);
}

void draw_band(cairo_t* cr, const ChartLayout& layout, const Series& series, Rgb colour, bool log_y) {
    set_colour(cr, colour, kBandOpacity);
    for (const std::vector<size_t>& run : drawable_runs(series, log_y, true)) {
        for (size_t i : run) cairo_line_to(cr, layout.px_x(series.x[i]), layout.px_y(series.band_lo[i]));
        for (size_t k = run.size(); k-- > 0;)
            cairo_line_to(cr, layout.px_x(series.x[run[k]]), layout.px_y(series.band_hi[run[k]]));
        cairo_close_path(cr);
        cairo_fill(cr);
    }
}

void draw_series(cairo_t* cr, const ChartLayout& layout, const Series& series, Rgb colour, bool log_y) {
    const std::vector<std::vector<size_t>> runs = drawable_runs(series, log_y);
    set_colour(cr, colour);
    cairo_set_line_width(cr, 2);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);
    size_t drawable = 0;
    for (const std::vector<size_t>& run : runs) {
        drawable += run.size();
        if (run.size() == 1) {  // a run of one point would be invisible: a dot
            cairo_arc(cr, layout.px_x(series.x[run[0]]), layout.px_y(series.y[run[0]]), 3, 0, 2 * std::numbers::pi);
            cairo_fill(cr);
            continue;
        }
        for (size_t i : run) cairo_line_to(cr, layout.px_x(series.x[i]), layout.px_y(series.y[i]));
        cairo_stroke(cr);
    }
    if (drawable > kMarkerMaxPoints) return;
    for (const std::vector<size_t>& run : runs)
        for (size_t i : run) {
            cairo_new_sub_path(cr);
            cairo_arc(cr, layout.px_x(series.x[i]), layout.px_y(series.y[i]), 2.5, 0, 2 * std::numbers::pi);
            cairo_fill(cr);
        }
}

cairo_status_t append_bytes(void* closure, const unsigned char* data, unsigned int length) {
    auto* bytes = static_cast<std::vector<uint8_t>*>(closure);
    bytes->insert(bytes->end(), data, data + length);
    return CAIRO_STATUS_SUCCESS;
}

}  // namespace

bool png_charts_available() { return true; }

TextMetrics png_text_metrics() {
    // Measured on a context like the one render_png draws on, so widths include its hinting.
    Surface surface(cairo_image_surface_create(CAIRO_FORMAT_RGB24, 1, 1), cairo_surface_destroy);
    check(cairo_surface_status(surface.get()), "creating a surface to measure text");
    auto cr = std::make_shared<Context>(new_context(surface.get()));
    TextMetrics metrics;
    metrics.text_height = kLabelFontPx;
    metrics.title_height = kTitleFontPx;
    metrics.text_width = [cr](const std::string& text) {
        use_font(cr->get(), false);
        return advance(cr->get(), valid_utf8(text));
    };
    metrics.title_width = [cr](const std::string& text) {
        use_font(cr->get(), true);
        return advance(cr->get(), valid_utf8(text));
    };
    return metrics;
}

std::vector<uint8_t> render_png(const Chart& chart) {
    const ChartLayout layout = layout_chart(chart, png_text_metrics());
    Surface surface(cairo_image_surface_create(CAIRO_FORMAT_RGB24, chart.width, chart.height), cairo_surface_destroy);
    check(cairo_surface_status(surface.get()), "creating a " + std::to_string(chart.width) + "x" +
                                                   std::to_string(chart.height) + " image");
    const Context context = new_context(surface.get());
    cairo_t* cr = context.get();
    const double left = layout.plot_left, top = layout.plot_top, right = layout.plot_right(),
                 bottom = layout.plot_bottom();
    set_colour(cr, kWhite);
    cairo_paint(cr);

    // Grid (a labelled tick gets a darker line than a minor one), frame, ticks and their labels.
    for (const Tick& tick : layout.x_axis.ticks)
        crisp_line(cr, layout.px_x(tick.value), top, layout.px_x(tick.value), bottom,
                   tick.label.empty() ? kMinorGrid : kGrid);
    for (const Tick& tick : layout.y_axis.ticks)
        crisp_line(cr, left, layout.px_y(tick.value), right, layout.px_y(tick.value),
                   tick.label.empty() ? kMinorGrid : kGrid);
    crisp_line(cr, left, top, left, bottom + 1, kFrame);
    crisp_line(cr, right, top, right, bottom + 1, kFrame);
    crisp_line(cr, left, top, right + 1, top, kFrame);
    crisp_line(cr, left, bottom, right + 1, bottom, kFrame);
    for (const Tick& tick : layout.x_axis.ticks) {
        const double x = layout.px_x(tick.value);
        crisp_line(cr, x, bottom, x, bottom + (tick.label.empty() ? 3 : layout.tick_length) + 1, kFrame);
        if (tick.label.empty()) continue;
        set_colour(cr, kInk);
        draw_text(cr, tick.label, x, layout.x_tick_label_center_y, 0);
    }
    for (const Tick& tick : layout.y_axis.ticks) {
        const double y = layout.px_y(tick.value);
        crisp_line(cr, left - (tick.label.empty() ? 3 : layout.tick_length), y, left, y, kFrame);
        if (tick.label.empty()) continue;
        set_colour(cr, kInk);
        draw_text(cr, tick.label, layout.y_tick_label_right, y, +1);
    }

    // Bands under every line; lines may reach a stroke's width past the frame, nothing further.
    cairo_save(cr);
    cairo_rectangle(cr, left - 3, top - 3, layout.plot_width + 6, layout.plot_height + 6);
    cairo_clip(cr);
    for (size_t s = 0; s < chart.series.size(); ++s) draw_band(cr, layout, chart.series[s], series_colour(s), chart.log_y);
    for (size_t s = 0; s < chart.series.size(); ++s)
        draw_series(cr, layout, chart.series[s], series_colour(s), chart.log_y);
    cairo_restore(cr);

    set_colour(cr, kInk);
    if (!layout.has_data) draw_text(cr, "no data", left + layout.plot_width / 2, top + layout.plot_height / 2, 0);
    if (!layout.title.empty()) draw_text(cr, layout.title, chart.width / 2.0, layout.title_center_y, 0, true);
    if (!layout.x_label.empty()) draw_text(cr, layout.x_label, left + layout.plot_width / 2, layout.x_label_center_y, 0);
    if (!layout.y_label.empty()) {  // reads upwards, centred on the plot's height
        cairo_save(cr);
        cairo_translate(cr, layout.y_label_center_x, top + layout.plot_height / 2);
        cairo_rotate(cr, -std::numbers::pi / 2);
        draw_text(cr, layout.y_label, 0, 0, 0);
        cairo_restore(cr);
    }
    for (const LegendRow& row : layout.legend) {
        set_colour(cr, row.colour);
        cairo_rectangle(cr, layout.legend_left, row.center_y - layout.swatch_height / 2, layout.swatch_width,
                        layout.swatch_height);
        cairo_fill(cr);
        set_colour(cr, kInk);
        draw_text(cr, row.label, layout.legend_text_left, row.center_y, -1);
    }
    if (!layout.legend_more.empty()) draw_text(cr, layout.legend_more, layout.legend_text_left, layout.legend_more_center_y, -1);

    check(cairo_status(cr), "drawing the chart");
    cairo_surface_flush(surface.get());
    std::vector<uint8_t> png;
    check(cairo_surface_write_to_png_stream(surface.get(), append_bytes, &png), "encoding the PNG");
    return png;
}

}  // namespace labdb

#else  // without Cairo: SVG only

namespace labdb {

namespace {

[[noreturn]] void refuse() {
    throw lab::ConfigError(
        "PNG charts are not built into this labdb: Cairo was not found when it was configured; hint: write an "
        ".svg chart instead (e.g. -o curves.svg), or install libcairo2-dev and rebuild labdb");
}

}  // namespace

bool png_charts_available() { return false; }
TextMetrics png_text_metrics() { refuse(); }
std::vector<uint8_t> render_png(const Chart&) { refuse(); }

}  // namespace labdb

#endif
