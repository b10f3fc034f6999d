// Aligned plain-text tables and the number formats of labdb's terminal output. The --json output
// never goes through these: it carries the stored values unrounded.
#pragma once
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace labdb {

class TextTable {
 public:
    explicit TextTable(std::vector<std::string> headers);
    // Cells beyond the header count are an error; missing cells print empty.
    void add_row(std::vector<std::string> cells);
    // Numbers read best right-aligned.
    void align_right(size_t column);
    bool empty() const { return rows_.empty(); }
    // Header, a rule of dashes, then the rows; columns separated by two spaces, no trailing blanks;
    // every line starts with `indent`.
    void print(std::ostream& out, const std::string& indent = "") const;

 private:
    std::vector<std::string> headers_;
    std::vector<std::vector<std::string>> rows_;
    std::vector<bool> right_aligned_;
};

// An integer below 2^53 in magnitude in full ("111488"), anything else with 5 significant digits
// ("2.3457", "1.2346e+05"); "nan" for NaN.
std::string format_number(double value);
// format_number, or "-" when there is no value.
std::string format_number(const std::optional<double>& value);
// The shortest text that reads back as the same double ("0.1", "2.5e-05"); "nan", "inf", "-inf".
std::string format_exact(double value);
// "12.3s", "4m05s", "2h03m".
std::string format_duration(double seconds);
// "2024-05-01T12:34:56.789Z" -> "2024-05-01 12:34" (the full text when it has another form).
std::string short_timestamp(const std::string& iso);
// One line for a table cell: newlines and tabs as \n and \t.
std::string one_line(const std::string& text);

}  // namespace labdb
