// labdb merge: joins result databases (e.g. one per Slurm task) into a new one.
//
// The new file is made by lab::ResultStore, so it has exactly the schema this build of labrun
// writes; rows are then copied with plain SQL. Each run gets a new id and every row that refers
// to it (any table with a run_id column: params, metrics, plugins, artifacts, texts, and whatever
// later schema versions add) is copied with the new id. Columns are those of the new file's schema
// that the input also has, so inputs of older schema versions merge too.
//
// New ids follow the runs' start times across all inputs, not the order of the inputs: labrun
// takes the highest id of a configuration as its latest run (to skip, resume or rerun it), so a
// run that started later must keep the higher id whichever input it came from (labrun --slurm
// lists the task databases before the older experiment database).
#include <unistd.h>

#include <algorithm>
#include <iostream>
#include <map>
#include <set>
#include <tuple>

#include "cli.h"
#include "lab/results.h"

namespace labdb {
namespace {

const char* kUsage =
    "usage: labdb merge A.db B.db ... -o C.db [--force]\n"
    "\n"
    "Writes a new database C.db with every run of the inputs. Runs get new ids in the order they\n"
    "started, whichever input they come from (params, metrics, plugins, artifacts and texts follow\n"
    "them), and keep their uid; a uid found in several inputs is copied once, from the first input\n"
    "that has it, with a warning. An existing C.db is refused unless --force is given. C.db appears\n"
    "only when the merge succeeded.";

// The columns of `table` in `to` that `from` has too, without `leave_out`.
std::vector<std::string> shared_columns(const Database& to, const Database& from, const std::string& table,
                                        const std::string& leave_out) {
    const std::vector<std::string> in_from = from.columns(table);
    std::vector<std::string> shared;
    for (const std::string& column : to.columns(table)) {
        if (column != leave_out && std::find(in_from.begin(), in_from.end(), column) != in_from.end()) {
            shared.push_back(column);
        }
    }
    for (const std::string& column : in_from) {
        if (column == leave_out) continue;
        const std::vector<std::string> in_to = to.columns(table);
        if (std::find(in_to.begin(), in_to.end(), column) == in_to.end()) {
            std::cerr << "labdb: warning: " << from.file().string() << ": column " << table << "." << column
                      << " is not in the schema of this labdb's results database and is not copied\n";
        }
    }
    return shared;
}

std::string column_list(const std::vector<std::string>& columns) {
    std::string text;
    for (const std::string& column : columns) text += (text.empty() ? "" : ", ") + quote_identifier(column);
    return text;
}

std::string placeholders(size_t first, size_t count) {
    std::string text;
    for (size_t i = 0; i < count; ++i) {
        text += i == 0 ? "?" : ", ?";
        text += std::to_string(first + i);
    }
    return text;
}

// Copies the rows of `table` whose run_id is `old_run` in `from` to `to` with run_id `new_run`.
// The statements are prepared per table and input, not per run.
class RunRowCopier {
 public:
    RunRowCopier(const Database& to, const Database& from, const std::string& table)
        : columns_(shared_columns(to, from, table, "run_id")),
          select_(from, "SELECT " + (columns_.empty() ? std::string("1") : column_list(columns_)) + " FROM " +
                            quote_identifier(table) + " WHERE run_id = ?1 ORDER BY rowid",
                  "read the " + table + " rows of a run"),
          insert_(to, "INSERT INTO " + quote_identifier(table) + " (run_id" +
                          (columns_.empty() ? "" : ", " + column_list(columns_)) + ") VALUES (?1" +
                          (columns_.empty() ? "" : ", " + placeholders(2, columns_.size())) + ")",
                  "copy a " + table + " row"),
          table_(table) {}

    int64_t copy(int64_t old_run, int64_t new_run) {
        select_.reset();
        select_.bind(1, old_run);
        int64_t copied = 0;
        while (select_.step()) {
            insert_.bind(1, new_run);
            for (size_t c = 0; c < columns_.size(); ++c) insert_.bind_column(static_cast<int>(c) + 2, select_, static_cast<int>(c));
            insert_.run();
            ++copied;
        }
        return copied;
    }
    const std::string& table() const { return table_; }

 private:
    std::vector<std::string> columns_;
    Statement select_, insert_;
    std::string table_;
};

std::vector<std::string> table_names(const Database& database) {
    Statement query(database,
                    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
                    " ORDER BY name",
                    "list the tables");
    std::vector<std::string> names;
    while (query.step()) names.push_back(query.column_text(0));
    return names;
}

void remove_database_files(const std::filesystem::path& file) {
    std::error_code ignored;
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) std::filesystem::remove(file.string() + suffix, ignored);
}

struct MergeCounts {
    int64_t runs = 0, duplicates = 0;
    std::map<std::string, int64_t> rows;  // table -> rows copied
};

// The runs of one input and what copies them: the runs row by id, then the rows that refer to it.
class InputRuns {
 public:
    InputRuns(const Database& output, const Database& input)
        : input_(input),
          columns_(shared_columns(output, input, "runs", "id")),
          select_(input, "SELECT " + column_list(columns_) + " FROM runs WHERE id = ?1", "read a run"),
          insert_(output, "INSERT INTO runs (" + column_list(columns_) + ") VALUES (" +
                              placeholders(1, columns_.size()) + ")",
                  "copy a run") {
        for (const std::string& table : table_names(output)) {
            if (table != "runs" && input.has_table(table) && output.has_column(table, "run_id") &&
                input.has_column(table, "run_id")) {
                copiers_.push_back(std::make_unique<RunRowCopier>(output, input, table));
            }
        }
    }

    // Copies run `old_id` of the input and its rows; returns the new id.
    int64_t copy(const Database& output, int64_t old_id, MergeCounts& counts) {
        select_.reset();
        select_.bind(1, old_id);
        if (!select_.step()) throw lab::Error("merge: run " + std::to_string(old_id) + " of '" + input_.file().string() +
                                             "' vanished while merging; hint: merge inputs no process is writing");
        for (size_t c = 0; c < columns_.size(); ++c) insert_.bind_column(static_cast<int>(c) + 1, select_, static_cast<int>(c));
        insert_.run();
        select_.reset();  // no read left open on the input between runs
        const int64_t new_id = sqlite3_last_insert_rowid(output.handle());
        ++counts.runs;
        for (const auto& copier : copiers_) counts.rows[copier->table()] += copier->copy(old_id, new_id);
        return new_id;
    }

 private:
    const Database& input_;
    std::vector<std::string> columns_;
    Statement select_, insert_;
    std::vector<std::unique_ptr<RunRowCopier>> copiers_;
};

// A run to copy: when it started (ISO-8601 text, "" when unknown), and where it comes from.
struct PendingRun {
    std::string started_at;
    size_t input = 0;
    int64_t old_id = 0;
};

// Copies the rows of `input`'s tables that are not tied to a run, and lists its runs whose uid no
// earlier input had (`uid_source`: uid -> the input it is copied from) in `pending`.
void collect_input(const Database& output, const Database& input, size_t input_index,
                   std::map<std::string, std::string>& uid_source, std::vector<PendingRun>& pending,
                   MergeCounts& counts) {
    const std::vector<std::string> output_tables = table_names(output);
    // Tables that are not about one run (the sweeps of schema version 2): rows already present
    // (the same sweep id from another input) are kept once.
    for (const std::string& table : output_tables) {
        if (table == "runs" || !input.has_table(table) || output.has_column(table, "run_id")) continue;
        const std::vector<std::string> columns = shared_columns(output, input, table, "");
        if (columns.empty()) continue;
        Statement select(input, "SELECT " + column_list(columns) + " FROM " + quote_identifier(table) + " ORDER BY rowid",
                         "read the " + table + " rows");
        Statement insert(output, "INSERT OR IGNORE INTO " + quote_identifier(table) + " (" + column_list(columns) +
                                     ") VALUES (" + placeholders(1, columns.size()) + ")",
                         "copy a " + table + " row");
        while (select.step()) {
            for (size_t c = 0; c < columns.size(); ++c) insert.bind_column(static_cast<int>(c) + 1, select, static_cast<int>(c));
            insert.run();
            counts.rows[table] += sqlite3_changes(output.handle());
        }
    }

    if (!input.has_column("runs", "uid")) {
        throw lab::Error("'" + input.file().string() + "' has no runs.uid column, so it is not a labrun results " +
                         "database; hint: merge only databases written by labrun");
    }
    const bool has_start = input.has_column("runs", "started_at");
    Statement select_runs(input, std::string("SELECT id, uid, ") + (has_start ? "started_at" : "''") +
                                     " FROM runs ORDER BY id",
                          "read the runs");
    while (select_runs.step()) {
        const int64_t old_id = select_runs.column_int(0);
        const std::string uid = select_runs.column_text(1);
        const auto seen = uid_source.find(uid);
        if (seen != uid_source.end()) {
            std::cerr << "labdb: warning: run " << old_id << " of '" << input.file().string() << "' has uid " << uid
                      << ", already copied from '" << seen->second << "'; kept that copy only\n";
            ++counts.duplicates;
            continue;
        }
        uid_source.emplace(uid, input.file().string());
        pending.push_back({select_runs.column_text(2), input_index, old_id});
    }
}

}  // namespace

int command_merge(const std::vector<std::string>& args, const GlobalOptions& global) {
    po::options_description options("merge options");
    options.add_options()
        ("output,o", po::value<std::string>(), "the new database file")
        ("force", po::bool_switch(), "replace the output file if it exists");
    po::options_description hidden;
    hidden.add_options()("input", po::value<std::vector<std::string>>(), "input databases");
    po::positional_options_description positional;
    positional.add("input", -1);
    const CommandLine command_line = parse_command_line(kUsage, options, hidden, positional, args, global, false);
    if (command_line.help) return kExitOk;
    if (!command_line.values.count("input")) throw UsageError("merge needs input databases; hint: labdb merge a.db b.db -o all.db");
    if (!command_line.values.count("output")) throw UsageError("merge needs -o OUTPUT.db");
    const std::vector<std::string> input_names = command_line.values["input"].as<std::vector<std::string>>();
    const std::filesystem::path output = command_line.values["output"].as<std::string>();
    const bool force = command_line.values["force"].as<bool>();

    std::error_code ec;
    const bool output_exists = std::filesystem::exists(output, ec);
    if (output_exists && !force) {
        throw lab::Error("merge: the output '" + output.string() + "' exists; hint: choose a new file name, or add " +
                         "--force to replace it");
    }
    if (output_exists && std::filesystem::is_directory(output, ec)) {
        throw lab::Error("merge: the output '" + output.string() + "' is a directory; hint: name a file, e.g. " +
                         (output / "merged.db").string());
    }
    // Opened (and checked) before the output is made, so a bad input leaves nothing behind.
    std::vector<std::unique_ptr<Database>> inputs;
    for (const std::string& name : input_names) {
        if (output_exists && std::filesystem::equivalent(name, output, ec)) {
            throw lab::Error("merge: the input '" + name + "' is also the output; hint: write the merge to a new file");
        }
        inputs.push_back(std::make_unique<Database>(name, Database::Mode::read_only));
    }

    const std::filesystem::path partial = output.string() + ".partial-" + std::to_string(::getpid());
    remove_database_files(partial);
    MergeCounts counts;
    try {
        { const lab::ResultStore schema_maker(partial); }
        {
            const Database merged(partial, Database::Mode::read_write);
            merged.execute("BEGIN IMMEDIATE", "begin the merge transaction");
            std::map<std::string, std::string> uid_source;
            std::vector<PendingRun> pending;
            for (size_t i = 0; i < inputs.size(); ++i) collect_input(merged, *inputs[i], i, uid_source, pending, counts);
            std::stable_sort(pending.begin(), pending.end(), [](const PendingRun& a, const PendingRun& b) {
                return std::tie(a.started_at, a.input, a.old_id) < std::tie(b.started_at, b.input, b.old_id);
            });
            std::vector<std::unique_ptr<InputRuns>> runs_of;
            for (const auto& input : inputs) runs_of.push_back(std::make_unique<InputRuns>(merged, *input));
            for (const PendingRun& run : pending) runs_of[run.input]->copy(merged, run.old_id, counts);
            merged.execute("COMMIT", "commit the merge");
        }
        // Closing the last connection checkpointed the WAL into the file; a WAL left behind would be
        // separated from its database by the rename.
        if (std::filesystem::exists(partial.string() + "-wal", ec) && std::filesystem::file_size(partial.string() + "-wal", ec) > 0) {
            throw lab::Error("merge: '" + partial.string() + "-wal' was not checkpointed into the database; hint: " +
                             "another process has the new file open, retry the merge");
        }
        // A replaced database's own WAL and shared-memory files must not be paired with the new file.
        std::filesystem::remove(output.string() + "-wal", ec);
        std::filesystem::remove(output.string() + "-shm", ec);
        std::filesystem::rename(partial, output);
        remove_database_files(partial);
    } catch (...) {
        remove_database_files(partial);
        throw;
    }

    std::cout << "merged " << counts.runs << " runs from " << inputs.size() << " database"
              << (inputs.size() == 1 ? "" : "s") << " into " << output.string();
    if (counts.duplicates > 0) std::cout << " (" << counts.duplicates << " duplicate uid skipped)";
    std::cout << "\n";
    for (const auto& [table, rows] : counts.rows) std::cout << "  " << table << ": " << rows << " rows\n";
    return kExitOk;
}

}  // namespace labdb
