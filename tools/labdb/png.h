// The raster half of the chart renderer: an RGB canvas that draws anti-aliased lines, rectangles and
// text in a built-in 5x7 bitmap font, and a PNG encoder.
//
// Hand-written because none of the libraries labrun uses (Boost, nlohmann/json, SQLite, oneDNN)
// rasterises or writes PNG, and the chart needs only these few primitives. The encoder stores the
// image uncompressed (zlib "stored" deflate blocks): the files are larger than a compressed PNG
// (~1.5 MB at 900x540) but the format stays a few dozen lines that are easy to verify.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "chart.h"

namespace labdb {

// CRC-32 as PNG chunks and gzip use it (reflected polynomial 0xEDB88320). Pass a previous result
// as `crc` to continue over more bytes.
uint32_t crc32(const uint8_t* data, size_t size, uint32_t crc = 0);
// Adler-32 as the zlib stream trailer uses it.
uint32_t adler32(const uint8_t* data, size_t size);
// A complete PNG file (8-bit RGB, no interlace) of `rgb`: (height, width, 3) bytes, rows top-down.
std::vector<uint8_t> encode_png(int width, int height, const std::vector<uint8_t>& rgb);

// The text sizes render_png uses for a chart of this size (the 5x7 font doubled from 600x360 up);
// layout_chart with these metrics gives the positions render_png draws at.
TextMetrics png_text_metrics(int width, int height);

// An RGB image to draw on. Coordinates are pixels from the top-left corner; pixel (i, j) covers
// [i, i+1) x [j, j+1), so its centre is (i + 0.5, j + 0.5), the same convention as SVG.
class Canvas {
 public:
    Canvas(int width, int height, Rgb background);

    int width() const { return width_; }
    int height() const { return height_; }
    Rgb pixel(int x, int y) const;
    const std::vector<uint8_t>& rgb() const { return rgb_; }  // (height, width, 3)

    // Later drawing touches only pixels whose centres lie in [left, right) x [top, bottom).
    void set_clip(double left, double top, double right, double bottom);
    void reset_clip();

    // Every pixel whose centre lies in [left, right) x [top, bottom), in one flat colour.
    void fill_rect(double left, double top, double right, double bottom, Rgb colour);
    // A line `width` pixels wide with round ends (a zero-length line is a dot), anti-aliased at its
    // edges; pixels whose centres are at least half a pixel inside the edge get exactly `colour`.
    void draw_line(double x0, double y0, double x1, double y1, double width, Rgb colour);
    // Text in the 5x7 font, each font pixel drawn as scale x scale pixels, from the top-left corner
    // (left, top) of its box. ASCII 0x20..0x7E as is; any other character (a UTF-8 sequence counts
    // as one) is drawn as '?'. `upwards` rotates the text a quarter turn anticlockwise, so that it
    // reads from bottom to top; its box is then text_height wide and text_width tall.
    void draw_text(const std::string& text, int left, int top, int scale, Rgb colour, bool upwards = false);

    static int text_width(const std::string& text, int scale);  // along the reading direction
    static int text_height(int scale) { return 7 * scale; }
    static int char_advance(int scale) { return 6 * scale; }  // 5 columns of glyph + 1 of space

 private:
    void blend(int x, int y, Rgb colour, double coverage);
    bool in_clip(int x, int y) const {
        return x >= clip_left_ && x < clip_right_ && y >= clip_top_ && y < clip_bottom_;
    }

    int width_, height_;
    std::vector<uint8_t> rgb_;
    int clip_left_ = 0, clip_top_ = 0, clip_right_ = 0, clip_bottom_ = 0;  // pixel index ranges
};

}  // namespace labdb
