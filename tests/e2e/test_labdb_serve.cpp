// labdb serve run as a user runs it: the built binary in a child process (`--port 0`, the port read
// from its first line), asked over HTTP with cpp-httplib's client. Its JSON must equal what
// `labdb runs|show|compare|ablate --json` print for the same database, see rows a writer adds
// while it runs, return hostile text unchanged, refuse every path outside its routes, leave the
// database file as it was, and stop with exit code 0 on SIGTERM.
#include <catch2/catch.hpp>

#ifdef LABDB_WITH_SERVE
#include <httplib.h>
#endif
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <regex>
#include <thread>

#include "lab/results.h"
#include "labdb_test_support.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace lab_test;
using namespace lab_test::labdb;
using Catch::Matchers::Contains;
using nlohmann::json;

namespace {


const std::string kSha = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
const std::string kScript = "<script>alert(1)</script>";
const std::string kQuotes = "it's \"quoted\" & <b>bold</b> \\ back\\slash";

struct Spec {
    std::string name, experiment;
    std::vector<std::pair<std::string, std::string>> params;
    std::vector<std::pair<int64_t, double>> val_loss;
    lab::RunStatus status = lab::RunStatus::finished;
    std::string error;
};

// Writes the runs through lab::ResultStore as labrun would (plugins, a text sample, perf metrics);
// returns their ids.
std::vector<int64_t> write_runs(const fs::path& db_file, const std::vector<Spec>& specs) {
    lab::ResultStore store(db_file);
    std::vector<int64_t> ids;
    for (const Spec& spec : specs) {
        lab::RunRecord record;
        record.name = spec.name;
        record.experiment = spec.experiment;
        record.config_hash = "hash-" + std::to_string(ids.size());
        record.config_text = "[experiment]\nname = " + spec.name + "\n";
        record.backend = "reference";
        record.device = "cpu";
        record.precision = "fp32";
        record.host = "testhost";
        record.code_revision = "rev-42";
        record.seed = 1;
        const int64_t id = store.begin_run(record, spec.params);
        store.add_plugin(id, "attention", "softmax", "1.0", "/plugins/libsoftmax.so", kSha,
                         "lab-sdk1/gcc-12/cxx11abi-1");
        store.declare_metric(id, "val/loss", lab::MetricGoal::minimize);
        store.declare_metric(id, "perf/tokens_per_s", lab::MetricGoal::none);
        for (const auto& [step, value] : spec.val_loss) {
            store.add_metric(id, step, "val/loss", value);
            store.add_metric(id, step, "perf/tokens_per_s", 1000.0 + value);
        }
        store.add_text(id, 10, "sample", "sample of " + spec.name);
        store.finish_run(id, spec.status, spec.error);
        ids.push_back(id);
    }
    return ids;
}

// Four finished runs of an ablation (softmax/linear x seed 1/2), a failed run and a run whose
// name and parameters are hostile text.
struct ServeDatabase {
    TempDir dir;
    fs::path db = dir.path / "lab.db";
    std::vector<int64_t> ids;
    std::string long_value = std::string(10000, 'x') + "\u00e9nd";
    ServeDatabase() {
        const lab::RunStatus finished = lab::RunStatus::finished;
        ids = write_runs(db, {
            {"soft_1", "abl", {{"attention.type", "softmax"}, {"experiment.seed", "1"}}, {{0, 3.0}, {50, 2.0}, {100, 1.5}},
             finished, ""},
            {"soft_2", "abl", {{"attention.type", "softmax"}, {"experiment.seed", "2"}}, {{0, 3.1}, {50, 2.1}, {100, 1.7}},
             finished, ""},
            {"lin_1", "abl", {{"attention.type", "linear"}, {"experiment.seed", "1"}}, {{0, 3.2}, {50, 2.4}, {100, 1.9}},
             finished, ""},
            {"lin_2", "abl", {{"attention.type", "linear"}, {"experiment.seed", "2"}}, {{0, 3.3}, {50, 2.5}, {100, 2.2}},
             finished, ""},
            {"broken", "abl", {{"attention.type", "softmax"}, {"experiment.seed", "3"}}, {{0, 5.0}},
             lab::RunStatus::failed, "non-finite loss at step 7"},
            {kScript, "hostile", {{"note", kQuotes}, {"long", long_value}, {"html", kScript}}, {{0, 1.0}}, finished, ""},
        });
    }
};

#ifdef LABDB_WITH_SERVE

// A `labdb serve` child process; SIGTERM and its exit code in stop(), or SIGKILL if a check failed.
class Server {
 public:
    explicit Server(const std::vector<std::string>& args, const fs::path& log) : log_(log) {
        std::vector<std::string> all = {"serve", "--port", "0"};
        all.insert(all.end(), args.begin(), args.end());
        pid_ = spawn_program(labdb::kBinary, all, log_);
        const std::regex first_line(R"(labdb serve: http://127\.0\.0\.1:(\d+)/ \(databases: (.*)\))");
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        std::smatch match;
        while (std::chrono::steady_clock::now() < deadline) {
            const std::string text = read_text(log_);
            const std::string line = text.substr(0, text.find('\n'));
            if (text.find('\n') != std::string::npos && std::regex_match(line, match, first_line)) {
                port_ = std::stoi(match[1]);
                databases_ = match[2];
                return;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
        }
        FAIL("labdb serve printed no address line within 20 s; its output:\n" << read_text(log_));
    }
    ~Server() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            wait_exit(pid_);
        }
    }
    Server(const Server&) = delete;
    Server& operator=(const Server&) = delete;

    int stop() {
        ::kill(pid_, SIGTERM);
        const int code = wait_exit(pid_);
        pid_ = -1;
        return code;
    }
    int port() const { return port_; }
    const std::string& databases() const { return databases_; }
    std::string log() const { return read_text(log_); }

    httplib::Result get(const std::string& target, const httplib::Headers& headers = {}) const {
        httplib::Client client("127.0.0.1", port_);
        client.set_url_encode(false);  // send the target byte for byte, "%2e%2e" included
        client.set_read_timeout(20, 0);
        return client.Get(target.c_str(), headers);
    }

    // GET `target`, requiring status 200 and a JSON body.
    json get_json(const std::string& target) const {
        const httplib::Result result = get(target);
        INFO("GET " << target);
        REQUIRE(result);
        INFO("status " << result->status << ": " << result->body);
        REQUIRE(result->status == 200);
        CHECK_THAT(result->get_header_value("Content-Type"), Contains("application/json"));
        return json::parse(result->body);
    }

 private:
    fs::path log_;
    pid_t pid_ = -1;
    int port_ = 0;
    std::string databases_;
};

// The API's rows without the fields it adds to the command's JSON.
json without(json rows, const std::vector<std::string>& fields) {
    for (json& row : rows) {
        for (const std::string& field : fields) row.erase(field);
    }
    return rows;
}

#endif

}  // namespace

TEST_CASE("labdb serve refuses bad flags, naming the flag or the file", "[labdb][serve]") {
    ServeDatabase study;
    const Outcome port = run_program(labdb::kBinary, {"serve", "--db", study.db.string(), "--port", "abc"});
    CHECK(port.exit_code == 2);
    CHECK_THAT(port.err, Contains("--port") && Contains("abc"));
    const Outcome range = run_program(labdb::kBinary, {"serve", "--db", study.db.string(), "--port", "70000"});
    CHECK(range.exit_code == 2);
    CHECK_THAT(range.err, Contains("--port 70000") && Contains("0 for any free port"));
    const Outcome missing = run_program(labdb::kBinary, {"serve", "--db", (study.dir.path / "nope.db").string()});
#ifdef LABDB_WITH_SERVE
    CHECK(missing.exit_code == 3);
    CHECK_THAT(missing.err, Contains("nope.db") && Contains("--db"));
#else
    WARN("skipped: labdb serve not built (no cpp-httplib or Chart.js at configure time): only flags were checked");
#endif
}

#ifdef LABDB_WITH_SERVE

TEST_CASE("labdb serve answers with the JSON of labdb runs, show, compare and ablate", "[labdb][serve]") {
    ServeDatabase study;
    const std::string db = study.db.string();
    const std::string db_bytes = read_text(study.db);
    REQUIRE(!db_bytes.empty());
    Server server({"--db", db}, study.dir.path / "serve.log");
    CHECK(server.databases() == db);

    SECTION("runs: every column of labdb runs, with db and params") {
        const json runs = server.get_json("/api/runs");
        REQUIRE(runs.size() == study.ids.size());
        CHECK(without(runs, {"db", "params"}) == run_json({"--db", db, "runs", "--json"}));
        CHECK(runs[0]["db"] == 0);
        CHECK(runs[0]["name"] == "soft_1");
        CHECK(runs[0]["best_val_loss"].get<double>() == 1.5);
        CHECK(runs[0]["steps"].get<int64_t>() == 100);
        CHECK(runs[0]["params"] == json({{"attention.type", "softmax"}, {"experiment.seed", "1"}}));
        CHECK(runs[4]["status"] == "failed");

        CHECK(server.get_json("/api/runs?status=failed").size() == 1);
        const json linear = server.get_json("/api/runs?where=attention.type%3Dlinear");
        REQUIRE(linear.size() == 2);
        CHECK(linear[1]["name"] == "lin_2");
        CHECK(server.get_json("/api/runs?experiment=hostile&db=0").size() == 1);
        CHECK(server.get_json("/api/runs?experiment=abl&where=attention.type%3Dlinear&where=experiment.seed%3D2")
                  .at(0)["id"] == study.ids[3]);

        const json databases = server.get_json("/api/databases");
        REQUIRE(databases.size() == 1);
        CHECK(databases[0]["experiments"] == json({"abl", "hostile"}));
        CHECK(databases[0]["runs"] == study.ids.size());
    }
    SECTION("a run page: labdb show's config, params, plugins with sha256, metrics, texts, error") {
        const std::string id = std::to_string(study.ids[0]);
        json shown = server.get_json("/api/runs/0/" + id);
        CHECK(shown["db"] == 0);
        CHECK(shown["file"] == db);
        CHECK(shown["params"]["attention.type"] == "softmax");
        REQUIRE(shown["plugins"].size() == 1);
        CHECK(shown["plugins"][0]["sha256"] == kSha);
        CHECK(shown["plugins"][0]["abi"] == "lab-sdk1/gcc-12/cxx11abi-1");
        CHECK(shown["run"]["code_revision"] == "rev-42");
        CHECK(shown["run"]["world_size"] == 1);  // one process: no communicator
        CHECK(shown["run"]["communicator"].is_null());
        CHECK(shown["texts"][0]["text"] == "sample of soft_1");
        shown.erase("db");
        shown.erase("file");
        CHECK(shown == run_json({"--db", db, "show", id, "--json"}));
        CHECK(server.get_json("/api/runs/0/" + std::to_string(study.ids[4]))["run"]["error"] ==
              "non-finite loss at step 7");
    }
    SECTION("metric points, all or after a step") {
        const std::string run = std::to_string(study.ids[2]);
        const json all = server.get_json("/api/metrics?db=0&run=" + run + "&name=val/loss");
        REQUIRE(all["points"].size() == 3);
        CHECK(all["points"][1]["step"] == 50);
        CHECK(all["points"][1]["value"].get<double>() == 2.4);
        CHECK(all["status"] == "finished");
        const json later = server.get_json("/api/metrics?db=0&run=" + run + "&name=val/loss&after_step=50");
        REQUIRE(later["points"].size() == 1);
        CHECK(later["points"][0]["step"] == 100);
        CHECK(later["points"][0]["value"].get<double>() == 1.9);
        CHECK(server.get_json("/api/metric_names") == json({"perf/tokens_per_s", "val/loss"}));
    }
    SECTION("ablate: the groups of labdb ablate --json") {
        const json reply =
            server.get_json("/api/ablate?db=0&experiment=abl&by=attention.type&metric=val/loss&baseline=softmax");
        const json expected = run_json({"--db", db, "ablate", "--experiment", "abl", "--by", "attention.type",
                                        "--metric", "val/loss", "--baseline", "softmax", "--json"});
        CHECK(reply["groups"] == expected);
        REQUIRE(reply["groups"].size() == 2);
        CHECK(reply["groups"][0]["group"]["attention.type"] == "linear");
        CHECK(reply["groups"][0]["n"] == 2);
        CHECK(reply["groups"][0]["mean"].get<double>() == Approx(2.05));
        CHECK(reply["groups"][0]["ci_method"] == "paired");
        CHECK(reply["goal"] == "min");
        CHECK(reply["left_out"] == 0);
        const json two_keys = server.get_json("/api/ablate?experiment=abl&by=attention.type&by=experiment.seed"
                                              "&metric=val/loss&best=1");
        CHECK(two_keys["groups"] == run_json({"--db", db, "ablate", "--experiment", "abl", "--by", "attention.type",
                                              "--by", "experiment.seed", "--metric", "val/loss", "--best", "--json"}));
    }
    SECTION("compare: labdb compare --json with a legend label per run") {
        const std::string a = std::to_string(study.ids[0]), b = std::to_string(study.ids[3]);
        const json rows = server.get_json("/api/compare?run=0:" + a + "&run=0:" + b);
        REQUIRE(rows.size() == 2);
        CHECK(rows[0]["label"] == "attention.type=softmax experiment.seed=1");
        CHECK(rows[1]["label"] == "attention.type=linear experiment.seed=2");
        CHECK(without(rows, {"db", "label"}) == run_json({"--db", db, "compare", a, b, "--json"}));
        CHECK(server.get_json("/api/compare?run=0:" + a + "&run=0:" + b + "&all=1") .at(0)["params"].size() == 2);
    }
    SECTION("hostile names and values come back intact as JSON strings") {
        const int64_t hostile = study.ids[5];
        const json runs = server.get_json("/api/runs?experiment=hostile");
        REQUIRE(runs.size() == 1);
        CHECK(runs[0]["name"] == kScript);
        CHECK(runs[0]["params"]["note"] == kQuotes);
        CHECK(runs[0]["params"]["html"] == kScript);
        CHECK(runs[0]["params"]["long"] == study.long_value);
        const json shown = server.get_json("/api/runs/0/" + std::to_string(hostile));
        CHECK(shown["run"]["name"] == kScript);
        CHECK(shown["params"]["long"].get<std::string>().size() == study.long_value.size());
        const httplib::Result raw = server.get("/api/runs/0/" + std::to_string(hostile));
        REQUIRE(raw);
        CHECK_THAT(raw->body, Contains(R"("<script>alert(1)</script>")"));
        CHECK_THAT(raw->body, Contains(R"(it's \"quoted\" & <b>bold</b> \\ back\\slash)"));
    }
    SECTION("errors: 400 for a bad request, 404 for what does not exist, each with a message") {
        struct Case {
            std::string target;
            int status;
            std::string says;
        };
        for (const Case& bad : std::vector<Case>{
                 {"/api/runs/0/999", 404, "no run with id 999"},
                 {"/api/runs/5/1", 404, "no database 5"},
                 {"/api/runs/0/abc", 400, "not an integer"},
                 {"/api/runs?status=done", 400, "not a run status"},
                 {"/api/runs?where=novalue", 400, "key=value"},
                 {"/api/metrics?db=0&run=1", 400, "'name' is missing"},
                 {"/api/metrics?db=0&run=1&name=val/loss&after_step=x", 400, "after_step"},
                 {"/api/ablate?experiment=abl&metric=val/loss", 400, "--by"},
                 {"/api/ablate?experiment=abl&by=model.layers&metric=val/loss", 404, "model.layers"},
                 {"/api/ablate?experiment=nope&by=attention.type&metric=val/loss", 404, "nope"},
                 {"/api/compare?run=0", 400, "DB:ID"},
                 {"/api/nothing", 404, "/api/runs"},
             }) {
            const httplib::Result result = server.get(bad.target);
            INFO("GET " << bad.target);
            REQUIRE(result);
            INFO(result->body);
            CHECK(result->status == bad.status);
            CHECK_THAT(json::parse(result->body).at("error").get<std::string>(), Contains(bad.says));
        }
    }
    SECTION("only its routes and embedded files: '..' and unknown paths are refused") {
        const httplib::Result page = server.get("/");
        REQUIRE(page);
        CHECK(page->status == 200);
        CHECK_THAT(page->get_header_value("Content-Type"), Contains("text/html"));
        CHECK_THAT(page->body, Contains(R"(<script src="/static/app.js")"));
        CHECK_THAT(page->get_header_value("Content-Security-Policy"), Contains("script-src 'self'"));
        const httplib::Result chart = server.get("/static/chart.min.js");
        REQUIRE(chart);
        CHECK(chart->status == 200);
        CHECK_THAT(chart->body, Contains("Chart.js v3"));
        const httplib::Result script = server.get("/static/app.js");
        REQUIRE(script);
        CHECK_THAT(script->body, Contains("textContent"));
        for (const std::string target : {"/../etc/passwd", "/static/../../x", "/%2e%2e/", "/%2E%2E/etc/passwd",
                                         "/static/%2e%2e/%2e%2e/etc/passwd", "/static/..%2fapp.js", "/api/../api/runs"}) {
            const httplib::Result result = server.get(target);
            INFO("GET " << target);
            REQUIRE(result);
            CHECK(result->status == 400);
            CHECK_THAT(result->body, !Contains("root:"));
        }
        for (const std::string target : {"/etc/passwd", "/static/", "/static/nope.js", "/static/index.htm",
                                         "/index.html", "/lab.db", "/api", "/api/runs/"}) {
            const httplib::Result result = server.get(target);
            INFO("GET " << target);
            REQUIRE(result);
            CHECK(result->status == 404);
        }
        // A page of another site whose name resolves to 127.0.0.1 (DNS rebinding) is turned away.
        const httplib::Result rebound = server.get("/api/runs", {{"Host", "evil.example:" + std::to_string(server.port())}});
        REQUIRE(rebound);
        CHECK(rebound->status == 403);
        const httplib::Result local = server.get("/api/runs", {{"Host", "localhost:" + std::to_string(server.port())}});
        REQUIRE(local);
        CHECK(local->status == 200);
    }
    CHECK(server.stop() == 0);
    CHECK_THAT(server.log(), Contains("stopped (SIGTERM)"));
    // Read-only: not one byte of the file changed.
    CHECK(read_text(study.db) == db_bytes);
}

TEST_CASE("labdb serve sees the rows a writer adds while it runs", "[labdb][serve]") {
    ServeDatabase study;
    Server server({"--db", study.db.string()}, study.dir.path / "serve.log");

    lab::ResultStore store(study.db);
    lab::RunRecord record;
    record.name = "live";
    record.experiment = "live";
    record.config_hash = "live";
    record.config_text = "[experiment]\nname = live\n";
    record.backend = "reference";
    const int64_t live = store.begin_run(record, {{"train.steps", "300"}});
    store.add_metric(live, 0, "train/loss", 4.0);
    store.add_metric(live, 10, "train/loss", 3.5);
    store.flush();

    const std::string metrics = "/api/metrics?db=0&run=" + std::to_string(live) + "&name=train/loss";
    const json first = server.get_json(metrics);
    REQUIRE(first["points"].size() == 2);
    CHECK(first["status"] == "running");
    const json runs = server.get_json("/api/runs?status=running");
    REQUIRE(runs.size() == 1);
    CHECK(runs[0]["id"] == live);
    CHECK(runs[0]["steps"] == 10);

    store.add_metric(live, 20, "train/loss", 3.25);
    store.flush();
    const json later = server.get_json(metrics + "&after_step=10");
    REQUIRE(later["points"].size() == 1);
    CHECK(later["points"][0]["step"] == 20);
    CHECK(later["points"][0]["value"].get<double>() == 3.25);
    CHECK(server.get_json("/api/runs?status=running")[0]["steps"] == 20);

    store.finish_run(live, lab::RunStatus::finished, "");
    CHECK(server.get_json(metrics)["status"] == "finished");
    CHECK(server.stop() == 0);
}

TEST_CASE("labdb serve names runs by database index and run id over several files", "[labdb][serve]") {
    ServeDatabase first;
    TempDir other_dir;
    const fs::path other = other_dir.path / "other.db";
    const std::vector<int64_t> other_ids =
        write_runs(other, {{"elsewhere", "far", {{"attention.type", "alibi"}}, {{0, 9.0}, {5, 8.0}},
                            lab::RunStatus::finished, ""}});
    Server server({"--db", first.db.string(), "--db", other.string()}, first.dir.path / "serve.log");
    CHECK(server.databases() == first.db.string() + ", " + other.string());

    const json runs = server.get_json("/api/runs");
    REQUIRE(runs.size() == first.ids.size() + 1);
    CHECK(runs.back()["db"] == 1);
    CHECK(runs.back()["name"] == "elsewhere");
    CHECK(server.get_json("/api/runs?db=1").size() == 1);
    // Run 1 of each file is a different run.
    CHECK(server.get_json("/api/runs/0/" + std::to_string(first.ids[0]))["run"]["name"] == "soft_1");
    CHECK(server.get_json("/api/runs/1/" + std::to_string(other_ids[0]))["run"]["name"] == "elsewhere");
    CHECK(server.get_json("/api/metrics?db=1&run=" + std::to_string(other_ids[0]) + "&name=val/loss")["points"].size() == 2);
    const json compared = server.get_json("/api/compare?run=0:" + std::to_string(first.ids[0]) + "&run=1:" +
                                          std::to_string(other_ids[0]));
    REQUIRE(compared.size() == 2);
    CHECK(compared[0]["db"] == 0);
    CHECK(compared[1]["db"] == 1);
    CHECK(compared[1]["params"]["attention.type"] == "alibi");
    CHECK(server.get_json("/api/databases").at(1)["experiments"] == json({"far"}));
    CHECK(server.stop() == 0);
}

#else

TEST_CASE("labdb serve answers with the JSON of labdb runs, show, compare and ablate", "[labdb][serve]") {
    WARN("skipped: labdb serve not built: cpp-httplib or Chart.js was missing at configure time "
         "(apt-get install libcpp-httplib-dev libjs-chart.js)");
}

#endif
