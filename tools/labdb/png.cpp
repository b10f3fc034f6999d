// PNG encoding, the raster canvas with its 5x7 font, and render_png (the layout of chart.cpp drawn
// on a canvas). Hand-written: see png.h for why.
#include "png.h"

#include <algorithm>
#include <array>
#include <cmath>

#include "lab/error.h"

namespace labdb {

// ---------------------------------------------------------------------------------------------
// PNG encoding

namespace {

const std::array<uint32_t, 256>& crc_table() {
    static const std::array<uint32_t, 256> table = [] {
        std::array<uint32_t, 256> entries{};
        for (uint32_t n = 0; n < 256; ++n) {
            uint32_t c = n;
            for (int bit = 0; bit < 8; ++bit) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            entries[n] = c;
        }
        return entries;
    }();
    return table;
}

void put_u32_be(std::vector<uint8_t>& out, uint32_t value) {
    for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(value >> shift));
}

// One chunk: length, type, data, CRC over type and data.
void put_chunk(std::vector<uint8_t>& png, const char type[4], const std::vector<uint8_t>& data) {
    put_u32_be(png, static_cast<uint32_t>(data.size()));
    const size_t type_at = png.size();
    png.insert(png.end(), type, type + 4);
    png.insert(png.end(), data.begin(), data.end());
    put_u32_be(png, crc32(png.data() + type_at, png.size() - type_at));
}

}  // namespace

uint32_t crc32(const uint8_t* data, size_t size, uint32_t crc) {
    const auto& table = crc_table();
    uint32_t c = crc ^ 0xFFFFFFFFu;
    for (size_t i = 0; i < size; ++i) c = table[(c ^ data[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

uint32_t adler32(const uint8_t* data, size_t size) {
    constexpr uint32_t kModulus = 65521;
    uint32_t a = 1, b = 0;
    while (size > 0) {
        // 5552 bytes is the most that can be summed before b could overflow 32 bits.
        const size_t block = std::min<size_t>(size, 5552);
        for (size_t i = 0; i < block; ++i) {
            a += data[i];
            b += a;
        }
        a %= kModulus;
        b %= kModulus;
        data += block;
        size -= block;
    }
    return (b << 16) | a;
}

std::vector<uint8_t> encode_png(int width, int height, const std::vector<uint8_t>& rgb) {
    if (width <= 0 || height <= 0 || rgb.size() != static_cast<size_t>(width) * height * 3)
        throw lab::DataError("encode_png: " + std::to_string(rgb.size()) + " bytes do not make a " +
                             std::to_string(width) + "x" + std::to_string(height) +
                             " RGB image; hint: pass width * height * 3 bytes, rows top-down");
    // Scanlines: filter type 0 (none) before each row.
    const size_t row_bytes = static_cast<size_t>(width) * 3;
    std::vector<uint8_t> scanlines;
    scanlines.reserve((row_bytes + 1) * height);
    for (int y = 0; y < height; ++y) {
        scanlines.push_back(0);
        scanlines.insert(scanlines.end(), rgb.begin() + y * row_bytes, rgb.begin() + (y + 1) * row_bytes);
    }
    // zlib stream (RFC 1950): header 78 01 (deflate, 32 KiB window, check bits), stored deflate
    // blocks (RFC 1951 3.2.4: a header byte with BFINAL and BTYPE=00, LEN, one's complement NLEN,
    // then the bytes), Adler-32 of the uncompressed bytes.
    constexpr size_t kMaxStored = 65535;
    std::vector<uint8_t> zlib = {0x78, 0x01};
    zlib.reserve(scanlines.size() + scanlines.size() / kMaxStored * 5 + 16);
    for (size_t at = 0; at < scanlines.size(); at += kMaxStored) {
        const size_t length = std::min(kMaxStored, scanlines.size() - at);
        const bool final_block = at + length == scanlines.size();
        zlib.push_back(final_block ? 1 : 0);
        zlib.push_back(static_cast<uint8_t>(length));
        zlib.push_back(static_cast<uint8_t>(length >> 8));
        zlib.push_back(static_cast<uint8_t>(~length));
        zlib.push_back(static_cast<uint8_t>(~length >> 8));
        zlib.insert(zlib.end(), scanlines.begin() + at, scanlines.begin() + at + length);
    }
    put_u32_be(zlib, adler32(scanlines.data(), scanlines.size()));

    std::vector<uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    std::vector<uint8_t> header;
    put_u32_be(header, static_cast<uint32_t>(width));
    put_u32_be(header, static_cast<uint32_t>(height));
    header.insert(header.end(), {8, 2, 0, 0, 0});  // bit depth 8, colour type 2 (RGB), deflate, filter 0, no interlace
    put_chunk(png, "IHDR", header);
    put_chunk(png, "IDAT", zlib);
    put_chunk(png, "IEND", {});
    return png;
}

// ---------------------------------------------------------------------------------------------
// Font: printable ASCII 0x20..0x7E, 5 columns x 7 rows per glyph, one byte per row (top row
// first, bit 4 = leftmost column). Lower-case descenders sit inside the 7 rows.

namespace {

constexpr uint8_t kFont[95][7] = {
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00}, {0x04, 0x04, 0x04, 0x04, 0x04, 0x00, 0x04},  // space !
    {0x0A, 0x0A, 0x0A, 0x00, 0x00, 0x00, 0x00}, {0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A},  // " #
    {0x04, 0x0F, 0x14, 0x0E, 0x05, 0x1E, 0x04}, {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03},  // $ %
    {0x0C, 0x12, 0x14, 0x08, 0x15, 0x12, 0x0D}, {0x0C, 0x04, 0x08, 0x00, 0x00, 0x00, 0x00},  // & '
    {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}, {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08},  // ( )
    {0x00, 0x04, 0x15, 0x0E, 0x15, 0x04, 0x00}, {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00},  // * +
    {0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08}, {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00},  // , -
    {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C}, {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00},  // . /
    {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}, {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E},  // 0 1
    {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}, {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E},  // 2 3
    {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}, {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E},  // 4 5
    {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}, {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08},  // 6 7
    {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}, {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C},  // 8 9
    {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00}, {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x04, 0x08},  // : ;
    {0x02, 0x04, 0x08, 0x10, 0x08, 0x04, 0x02}, {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00},  // < =
    {0x08, 0x04, 0x02, 0x01, 0x02, 0x04, 0x08}, {0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04},  // > ?
    {0x0E, 0x11, 0x01, 0x0D, 0x15, 0x15, 0x0E}, {0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11},  // @ A
    {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E}, {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E},  // B C
    {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C}, {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F},  // D E
    {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10}, {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F},  // F G
    {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}, {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E},  // H I
    {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C}, {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11},  // J K
    {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F}, {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11},  // L M
    {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}, {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E},  // N O
    {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10}, {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D},  // P Q
    {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11}, {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E},  // R S
    {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}, {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E},  // T U
    {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04}, {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A},  // V W
    {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11}, {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04},  // X Y
    {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F}, {0x0E, 0x08, 0x08, 0x08, 0x08, 0x08, 0x0E},  // Z [
    {0x00, 0x10, 0x08, 0x04, 0x02, 0x01, 0x00}, {0x0E, 0x02, 0x02, 0x02, 0x02, 0x02, 0x0E},  // backslash ]
    {0x04, 0x0A, 0x11, 0x00, 0x00, 0x00, 0x00}, {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F},  // ^ _
    {0x08, 0x04, 0x02, 0x00, 0x00, 0x00, 0x00}, {0x00, 0x00, 0x0E, 0x01, 0x0F, 0x11, 0x0F},  // ` a
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x1E}, {0x00, 0x00, 0x0E, 0x10, 0x10, 0x11, 0x0E},  // b c
    {0x01, 0x01, 0x0D, 0x13, 0x11, 0x11, 0x0F}, {0x00, 0x00, 0x0E, 0x11, 0x1F, 0x10, 0x0E},  // d e
    {0x06, 0x09, 0x08, 0x1C, 0x08, 0x08, 0x08}, {0x00, 0x0F, 0x11, 0x11, 0x0F, 0x01, 0x0E},  // f g
    {0x10, 0x10, 0x16, 0x19, 0x11, 0x11, 0x11}, {0x04, 0x00, 0x0C, 0x04, 0x04, 0x04, 0x0E},  // h i
    {0x02, 0x00, 0x06, 0x02, 0x02, 0x12, 0x0C}, {0x10, 0x10, 0x12, 0x14, 0x18, 0x14, 0x12},  // j k
    {0x0C, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}, {0x00, 0x00, 0x1A, 0x15, 0x15, 0x11, 0x11},  // l m
    {0x00, 0x00, 0x16, 0x19, 0x11, 0x11, 0x11}, {0x00, 0x00, 0x0E, 0x11, 0x11, 0x11, 0x0E},  // n o
    {0x00, 0x00, 0x1E, 0x11, 0x1E, 0x10, 0x10}, {0x00, 0x00, 0x0D, 0x13, 0x0F, 0x01, 0x01},  // p q
    {0x00, 0x00, 0x16, 0x19, 0x10, 0x10, 0x10}, {0x00, 0x00, 0x0E, 0x10, 0x0E, 0x01, 0x1E},  // r s
    {0x08, 0x08, 0x1C, 0x08, 0x08, 0x09, 0x06}, {0x00, 0x00, 0x11, 0x11, 0x11, 0x13, 0x0D},  // t u
    {0x00, 0x00, 0x11, 0x11, 0x11, 0x0A, 0x04}, {0x00, 0x00, 0x11, 0x11, 0x15, 0x15, 0x0A},  // v w
    {0x00, 0x00, 0x11, 0x0A, 0x04, 0x0A, 0x11}, {0x00, 0x00, 0x11, 0x11, 0x0F, 0x01, 0x0E},  // x y
    {0x00, 0x00, 0x1F, 0x02, 0x04, 0x08, 0x1F}, {0x02, 0x04, 0x04, 0x08, 0x04, 0x04, 0x02},  // z {
    {0x04, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}, {0x08, 0x04, 0x04, 0x02, 0x04, 0x04, 0x08},  // | }
    {0x00, 0x00, 0x08, 0x15, 0x02, 0x00, 0x00},                                              // ~
};

// The glyphs of `text`: printable ASCII as is, everything else '?', one per UTF-8 code point.
std::string printable_glyphs(const std::string& text) {
    std::string glyphs;
    for (unsigned char c : text) {
        if ((c & 0xC0) == 0x80) continue;  // a continuation byte: its code point already got a '?'
        glyphs += (c >= 0x20 && c <= 0x7E) ? static_cast<char>(c) : '?';
    }
    return glyphs;
}

int to_pixel_index(double coordinate, int limit) {
    // Pixel i has its centre at i + 0.5, so centres at or beyond `coordinate` start at ceil(c - 0.5).
    return static_cast<int>(std::clamp(std::ceil(coordinate - 0.5), 0.0, static_cast<double>(limit)));
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Canvas

Canvas::Canvas(int width, int height, Rgb background) : width_(width), height_(height) {
    if (width <= 0 || height <= 0 || width > 65535 || height > 65535)
        throw lab::DataError("Canvas: size " + std::to_string(width) + "x" + std::to_string(height) +
                             " is outside 1x1 .. 65535x65535; hint: check the chart's width and height");
    rgb_.resize(static_cast<size_t>(width) * height * 3);
    for (size_t i = 0; i < rgb_.size(); i += 3) {
        rgb_[i] = background.r;
        rgb_[i + 1] = background.g;
        rgb_[i + 2] = background.b;
    }
    reset_clip();
}

Rgb Canvas::pixel(int x, int y) const {
    const size_t at = (static_cast<size_t>(y) * width_ + x) * 3;
    return {rgb_.at(at), rgb_.at(at + 1), rgb_.at(at + 2)};
}

void Canvas::set_clip(double left, double top, double right, double bottom) {
    clip_left_ = to_pixel_index(left, width_);
    clip_right_ = to_pixel_index(right, width_);
    clip_top_ = to_pixel_index(top, height_);
    clip_bottom_ = to_pixel_index(bottom, height_);
}

void Canvas::reset_clip() {
    clip_left_ = clip_top_ = 0;
    clip_right_ = width_;
    clip_bottom_ = height_;
}

void Canvas::blend(int x, int y, Rgb colour, double coverage) {
    if (!in_clip(x, y)) return;
    uint8_t* target = &rgb_[(static_cast<size_t>(y) * width_ + x) * 3];
    if (coverage >= 1.0) {
        target[0] = colour.r, target[1] = colour.g, target[2] = colour.b;
        return;
    }
    const auto mix = [coverage](uint8_t old_value, uint8_t new_value) {
        return static_cast<uint8_t>(std::lround(old_value + (new_value - old_value) * coverage));
    };
    target[0] = mix(target[0], colour.r);
    target[1] = mix(target[1], colour.g);
    target[2] = mix(target[2], colour.b);
}

void Canvas::fill_rect(double left, double top, double right, double bottom, Rgb colour) {
    const int x_end = to_pixel_index(right, width_), y_end = to_pixel_index(bottom, height_);
    for (int y = to_pixel_index(top, height_); y < y_end; ++y)
        for (int x = to_pixel_index(left, width_); x < x_end; ++x) blend(x, y, colour, 1.0);
}

void Canvas::draw_line(double x0, double y0, double x1, double y1, double width, Rgb colour) {
    // Coverage from the distance of each pixel centre to the segment: full within half_width - 0.5,
    // fading to zero over one pixel. Simple and exact enough for chart lines two pixels wide.
    const double half_width = width / 2, reach = half_width + 0.5;
    const int x_begin = to_pixel_index(std::min(x0, x1) - reach, width_);
    const int x_end = to_pixel_index(std::max(x0, x1) + reach, width_);
    const int y_begin = to_pixel_index(std::min(y0, y1) - reach, height_);
    const int y_end = to_pixel_index(std::max(y0, y1) + reach, height_);
    const double dx = x1 - x0, dy = y1 - y0, length_squared = dx * dx + dy * dy;
    for (int y = y_begin; y < y_end; ++y) {
        for (int x = x_begin; x < x_end; ++x) {
            const double cx = x + 0.5, cy = y + 0.5;
            const double along =
                length_squared > 0 ? std::clamp(((cx - x0) * dx + (cy - y0) * dy) / length_squared, 0.0, 1.0) : 0.0;
            const double distance = std::hypot(cx - (x0 + along * dx), cy - (y0 + along * dy));
            const double coverage = std::min(1.0, reach - distance);
            if (coverage > 0) blend(x, y, colour, coverage);
        }
    }
}

int Canvas::text_width(const std::string& text, int scale) {
    const auto glyphs = static_cast<int>(printable_glyphs(text).size());
    return glyphs == 0 ? 0 : glyphs * char_advance(scale) - scale;
}

void Canvas::draw_text(const std::string& text, int left, int top, int scale, Rgb colour, bool upwards) {
    const std::string glyphs = printable_glyphs(text);
    const int length = text_width(text, scale);
    for (size_t g = 0; g < glyphs.size(); ++g) {
        const uint8_t* rows = kFont[static_cast<unsigned char>(glyphs[g]) - 0x20];
        for (int row = 0; row < 7; ++row) {
            for (int column = 0; column < 5; ++column) {
                if (!(rows[row] & (0x10 >> column))) continue;
                // (along, across): position in the unrotated text box, along the reading direction.
                const int along = static_cast<int>(g) * char_advance(scale) + column * scale, across = row * scale;
                const int x = upwards ? left + across : left + along;
                const int y = upwards ? top + length - along - scale : top + across;
                for (int dy = 0; dy < scale; ++dy)
                    for (int dx = 0; dx < scale; ++dx) blend(x + dx, y + dy, colour, 1.0);  // clipped there
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// render_png

namespace {

constexpr Rgb kWhite{255, 255, 255}, kInk{0x22, 0x22, 0x22}, kFrame{0x33, 0x33, 0x33};
constexpr Rgb kGrid{0xe0, 0xe0, 0xe0}, kMinorGrid{0xf2, 0xf2, 0xf2};

// Font pixels doubled on ordinary charts; small charts keep the 5x7 font as it is.
int text_scale(int width, int height) { return width >= 600 && height >= 360 ? 2 : 1; }

// Text centred on (center_x, center_y); `align` -1 puts its left edge at center_x, +1 its right edge.
void text_at(Canvas& canvas, const std::string& text, double center_x, double center_y, int scale, Rgb colour,
             int align = 0) {
    const int width = Canvas::text_width(text, scale);
    const double left = align < 0 ? center_x : align > 0 ? center_x - width : center_x - width / 2.0;
    canvas.draw_text(text, static_cast<int>(std::lround(left)),
                     static_cast<int>(std::lround(center_y - Canvas::text_height(scale) / 2.0)), scale, colour);
}

void draw_series(Canvas& canvas, const ChartLayout& layout, const Series& series, Rgb colour, bool log_y) {
    size_t drawable = 0;
    for (size_t i = 0; i < series.x.size(); ++i) drawable += is_drawable(series, i, log_y);
    bool have_previous = false, previous_alone = false;
    double previous_x = 0, previous_y = 0;
    for (size_t i = 0; i <= series.x.size(); ++i) {
        const bool drawn = i < series.x.size() && is_drawable(series, i, log_y);
        if (!drawn) {
            // The end of a run: a run of a single point would be invisible, so it becomes a dot.
            if (have_previous && previous_alone) canvas.draw_line(previous_x, previous_y, previous_x, previous_y, 6, colour);
            have_previous = false;
            continue;
        }
        const double x = layout.px_x(series.x[i]), y = layout.px_y(series.y[i]);
        if (have_previous) canvas.draw_line(previous_x, previous_y, x, y, 2, colour);
        previous_alone = !have_previous;
        have_previous = true;
        previous_x = x, previous_y = y;
    }
    if (drawable <= 25)  // markers on sparse series, as in the SVG
        for (size_t i = 0; i < series.x.size(); ++i)
            if (is_drawable(series, i, log_y)) {
                const double x = layout.px_x(series.x[i]), y = layout.px_y(series.y[i]);
                canvas.draw_line(x, y, x, y, 5, colour);
            }
}

}  // namespace

TextMetrics png_text_metrics(int width, int height) {
    const int scale = text_scale(width, height);
    return {static_cast<double>(Canvas::char_advance(scale)), static_cast<double>(Canvas::text_height(scale)),
            static_cast<double>(Canvas::char_advance(scale + 1)), static_cast<double>(Canvas::text_height(scale + 1))};
}

std::vector<uint8_t> render_png(const Chart& chart) {
    const int scale = text_scale(chart.width, chart.height);
    const ChartLayout layout = layout_chart(chart, png_text_metrics(chart.width, chart.height));
    Canvas canvas(chart.width, chart.height, kWhite);
    const double left = layout.plot_left, top = layout.plot_top, right = layout.plot_right(),
                 bottom = layout.plot_bottom();
    // One-pixel lines are the pixel column or row that holds the coordinate.
    const auto vertical = [&](double x, double y0, double y1, Rgb colour) {
        canvas.fill_rect(std::floor(x), y0, std::floor(x) + 1, y1, colour);
    };
    const auto horizontal = [&](double y, double x0, double x1, Rgb colour) {
        canvas.fill_rect(x0, std::floor(y), x1, std::floor(y) + 1, colour);
    };

    for (const Tick& tick : layout.x_axis.ticks)
        vertical(layout.px_x(tick.value), top, bottom, tick.label.empty() ? kMinorGrid : kGrid);
    for (const Tick& tick : layout.y_axis.ticks)
        horizontal(layout.px_y(tick.value), left, right, tick.label.empty() ? kMinorGrid : kGrid);
    vertical(left, top, bottom + 1, kFrame);
    vertical(right, top, bottom + 1, kFrame);
    horizontal(top, left, right + 1, kFrame);
    horizontal(bottom, left, right + 1, kFrame);
    for (const Tick& tick : layout.x_axis.ticks) {
        const double x = layout.px_x(tick.value);
        vertical(x, bottom, bottom + (tick.label.empty() ? 3 : layout.tick_length) + 1, kFrame);
        if (!tick.label.empty()) text_at(canvas, tick.label, x, layout.x_tick_label_center_y, scale, kInk);
    }
    for (const Tick& tick : layout.y_axis.ticks) {
        const double y = layout.px_y(tick.value);
        horizontal(y, left - (tick.label.empty() ? 3 : layout.tick_length), left, kFrame);
        if (!tick.label.empty()) text_at(canvas, tick.label, layout.y_tick_label_right, y, scale, kInk, +1);
    }

    // Lines may reach a stroke's width past the frame (points on the axis ends), nothing further.
    canvas.set_clip(left - 3, top - 3, right + 3, bottom + 3);
    for (size_t s = 0; s < chart.series.size(); ++s)
        draw_series(canvas, layout, chart.series[s], series_colour(s), chart.log_y);
    canvas.reset_clip();
    if (!layout.has_data) text_at(canvas, "no data", left + layout.plot_width / 2, top + layout.plot_height / 2, scale, kInk);

    if (!layout.title.empty()) {
        // The title in a bold face: the glyphs drawn twice, one pixel apart.
        const int title_scale = scale + 1;
        const int width = Canvas::text_width(layout.title, title_scale);
        const int title_left = static_cast<int>(std::lround(chart.width / 2.0 - width / 2.0));
        const int title_top = static_cast<int>(std::lround(layout.title_center_y - Canvas::text_height(title_scale) / 2.0));
        canvas.draw_text(layout.title, title_left, title_top, title_scale, kInk);
        canvas.draw_text(layout.title, title_left + 1, title_top, title_scale, kInk);
    }
    if (!layout.x_label.empty())
        text_at(canvas, layout.x_label, left + layout.plot_width / 2, layout.x_label_center_y, scale, kInk);
    if (!layout.y_label.empty()) {
        const int length = Canvas::text_width(layout.y_label, scale);
        canvas.draw_text(layout.y_label,
                         static_cast<int>(std::lround(layout.y_label_center_x - Canvas::text_height(scale) / 2.0)),
                         static_cast<int>(std::lround(top + layout.plot_height / 2 - length / 2.0)), scale, kInk,
                         /*upwards=*/true);
    }
    for (const LegendRow& row : layout.legend) {
        canvas.fill_rect(layout.legend_left, row.center_y - layout.swatch_height / 2,
                         layout.legend_left + layout.swatch_width, row.center_y + layout.swatch_height / 2, row.colour);
        text_at(canvas, row.label, layout.legend_text_left, row.center_y, scale, kInk, -1);
    }
    if (!layout.legend_more.empty())
        text_at(canvas, layout.legend_more, layout.legend_text_left, layout.legend_more_center_y, scale, kInk, -1);
    return encode_png(chart.width, chart.height, canvas.rgb());
}

}  // namespace labdb
