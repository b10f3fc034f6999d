#include "text_table.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdio>

#include "lab/error.h"

namespace labdb {
namespace {

// Terminal columns taken by UTF-8 text: one per code point (continuation bytes take none).
size_t display_width(const std::string& text) {
    size_t width = 0;
    for (unsigned char c : text) {
        if ((c & 0xC0) != 0x80) ++width;
    }
    return width;
}

}  // namespace

TextTable::TextTable(std::vector<std::string> headers)
    : headers_(std::move(headers)), right_aligned_(headers_.size(), false) {}

void TextTable::add_row(std::vector<std::string> cells) {
    if (cells.size() > headers_.size()) {
        throw lab::Error("TextTable: a row has " + std::to_string(cells.size()) + " cells but the table has " +
                         std::to_string(headers_.size()) + " columns; hint: this is a bug in labdb, please report it");
    }
    cells.resize(headers_.size());
    rows_.push_back(std::move(cells));
}

void TextTable::align_right(size_t column) {
    if (column < right_aligned_.size()) right_aligned_[column] = true;
}

void TextTable::print(std::ostream& out, const std::string& indent) const {
    std::vector<size_t> widths(headers_.size());
    for (size_t c = 0; c < headers_.size(); ++c) widths[c] = display_width(headers_[c]);
    for (const auto& row : rows_) {
        for (size_t c = 0; c < row.size(); ++c) widths[c] = std::max(widths[c], display_width(row[c]));
    }
    auto print_row = [&](const std::vector<std::string>& cells) {
        std::string line = indent;
        for (size_t c = 0; c < cells.size(); ++c) {
            const std::string padding(widths[c] - display_width(cells[c]), ' ');
            if (c > 0) line += "  ";
            line += right_aligned_[c] ? padding + cells[c] : cells[c] + padding;
        }
        while (!line.empty() && line.back() == ' ') line.pop_back();
        out << line << "\n";
    };
    print_row(headers_);
    std::vector<std::string> rule;
    for (size_t width : widths) rule.emplace_back(width, '-');
    print_row(rule);
    for (const auto& row : rows_) print_row(row);
}

std::string format_number(double value) {
    if (std::isnan(value)) return "nan";
    // Counts (val/tokens, parameters) read whole: %.5g would print 111488 as 1.1149e+05. Below 2^53
    // every integer is exact in a double, so these digits are the stored value's.
    if (std::trunc(value) == value && std::fabs(value) < 9007199254740992.0) {
        return std::to_string(static_cast<int64_t>(value));
    }
    char text[32];
    std::snprintf(text, sizeof text, "%.5g", value);
    return text;
}

std::string format_number(const std::optional<double>& value) { return value ? format_number(*value) : "-"; }

std::string format_exact(double value) {
    if (std::isnan(value)) return "nan";
    if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
    char text[64];
    const auto result = std::to_chars(text, text + sizeof text, value);
    return std::string(text, result.ptr);
}

std::string format_duration(double seconds) {
    if (std::isnan(seconds)) return "-";
    char text[32];
    if (seconds < 60) {
        std::snprintf(text, sizeof text, "%.1fs", seconds);
    } else if (seconds < 3600) {
        const long total = std::lround(seconds);
        std::snprintf(text, sizeof text, "%ldm%02lds", total / 60, total % 60);
    } else {
        const long minutes = std::lround(seconds / 60);
        std::snprintf(text, sizeof text, "%ldh%02ldm", minutes / 60, minutes % 60);
    }
    return text;
}

std::string short_timestamp(const std::string& iso) {
    if (iso.size() >= 16 && iso[10] == 'T') return iso.substr(0, 10) + " " + iso.substr(11, 5);
    return iso;
}

std::string one_line(const std::string& text) {
    std::string line;
    for (char c : text) {
        if (c == '\n') {
            line += "\\n";
        } else if (c == '\t') {
            line += "\\t";
        } else if (c != '\r') {
            line += c;
        }
    }
    return line;
}

}  // namespace labdb
