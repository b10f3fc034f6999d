#include "lab/checkpoint.h"

#include <unistd.h>

#include <fstream>
#include <sstream>

#include "lab/error.h"
#include "lab/safetensors.h"

namespace lab {

namespace fs = std::filesystem;

namespace {

std::string exact(double v) {
    std::ostringstream os;
    os.precision(17);
    os << v;
    return os.str();
}

template <class T>
T parse_number(const Metadata& meta, const std::string& key, const fs::path& file) {
    auto it = meta.find(key);
    if (it == meta.end()) throw DataError("checkpoint '" + file.string() + "' has no '" + key + "' in its metadata");
    std::istringstream in(it->second);
    T value{};
    if (!(in >> value)) throw DataError("checkpoint '" + file.string() + "': metadata '" + key + "' is not a number");
    return value;
}

void write_text_atomically(const fs::path& file, const std::string& text) {
    fs::path tmp = file;
    tmp += ".tmp-" + std::to_string(::getpid());
    {
        std::ofstream out(tmp, std::ios::trunc);
        out << text;
        if (!out) throw DataError("cannot write '" + tmp.string() + "'");
    }
    fsync_path(tmp);
    fs::rename(tmp, file);
}

}  // namespace

fs::path save_checkpoint(const fs::path& run_dir, const Module& model, const Module& task, const Optimizer& optimizer,
                         const TrainerState& state) {
    fs::create_directories(run_dir);
    std::string name = "checkpoint-" + std::to_string(state.step);
    fs::path tmp = run_dir / (name + ".tmp-" + std::to_string(::getpid()));
    fs::remove_all(tmp);
    fs::create_directories(tmp);

    TensorMap trainer;
    for (const auto& [k, t] : task.state_dict()) trainer["task." + k] = t;
    for (const auto& [k, t] : optimizer.state()) trainer["optimizer." + k] = t;
    Metadata meta = {{"format", "labrun-checkpoint-1"},
                     {"step", std::to_string(state.step)},
                     {"data_position", std::to_string(state.data_position)},
                     {"dropout_offset", std::to_string(state.dropout_offset)},
                     {"config_hash", state.config_hash},
                     {"loss_sum", exact(state.loss_sum)},
                     {"loss_count", std::to_string(state.loss_count)}};
    save_safetensors(tmp / "model.safetensors", model.export_state(), {{"format", "pt"}});
    save_safetensors(tmp / "trainer.safetensors", trainer, meta);
    fsync_path(tmp);

    fs::path final_dir = run_dir / name;
    fs::remove_all(final_dir);  // a checkpoint of the same step from an earlier attempt
    fs::rename(tmp, final_dir);
    fsync_path(run_dir);
    write_text_atomically(run_dir / "latest", name + "\n");
    fsync_path(run_dir);
    for (const auto& entry : fs::directory_iterator(run_dir)) {
        std::string n = entry.path().filename().string();
        if (entry.is_directory() && n.rfind("checkpoint-", 0) == 0 && n != name) fs::remove_all(entry.path());
    }
    return final_dir;
}

std::optional<fs::path> latest_checkpoint(const fs::path& run_dir) {
    std::ifstream in(run_dir / "latest");
    std::string name;
    if (!in || !(in >> name)) return std::nullopt;
    fs::path dir = run_dir / name;
    std::error_code ec;
    if (!fs::exists(dir / "trainer.safetensors", ec) || !fs::exists(dir / "model.safetensors", ec))
        return std::nullopt;
    return dir;
}

TrainerState load_checkpoint(const fs::path& dir, Module& model, Module& task, Optimizer& optimizer,
                             const std::string& expected_config_hash) {
    Backend* backend = nullptr;
    for (const auto& [k, t] : model.state_dict()) {
        backend = &t.backend();
        break;
    }
    if (!backend) throw DataError("checkpoint '" + dir.string() + "': the model has no parameters to load into");
    Metadata meta;
    fs::path trainer_file = dir / "trainer.safetensors";
    TensorMap trainer = load_safetensors(trainer_file, *backend, &meta);
    if (meta["config_hash"] != expected_config_hash)
        throw DataError("checkpoint '" + dir.string() + "' belongs to configuration " + meta["config_hash"] +
                        ", not to this run's " + expected_config_hash + "; it cannot be resumed with other settings");
    model.load_state_dict(model.import_state(load_safetensors(dir / "model.safetensors", *backend)));
    TensorMap task_state, optimizer_state;
    for (auto& [k, t] : trainer) {
        if (k.rfind("task.", 0) == 0) task_state[k.substr(5)] = t;
        else if (k.rfind("optimizer.", 0) == 0) optimizer_state[k.substr(10)] = t;
    }
    task.load_state_dict(task_state);
    optimizer.load_state(optimizer_state);
    TrainerState state;
    state.step = parse_number<int64_t>(meta, "step", trainer_file);
    state.data_position = parse_number<uint64_t>(meta, "data_position", trainer_file);
    state.dropout_offset = parse_number<uint64_t>(meta, "dropout_offset", trainer_file);
    state.loss_sum = parse_number<double>(meta, "loss_sum", trainer_file);
    state.loss_count = parse_number<int64_t>(meta, "loss_count", trainer_file);
    state.config_hash = meta["config_hash"];
    return state;
}

TensorMap load_model_weights(const fs::path& path, Backend& backend, fs::path* resolved) {
    std::error_code ec;
    if (!fs::exists(path, ec))
        throw DataError("init_from: '" + path.string() +
                        "' does not exist; give a model.safetensors file, a checkpoint or run folder, a results "
                        "database, or a Hugging Face model folder");
    fs::path file = path;
    if (fs::is_directory(path, ec)) {
        if (auto latest = latest_checkpoint(path)) file = *latest / "model.safetensors";
        else file = path / "model.safetensors";
        if (!fs::exists(file, ec)) {
            if (fs::exists(path / "pytorch_model.bin", ec))
                throw DataError("init_from: '" + path.string() +
                                "' holds pytorch_model.bin but no model.safetensors; convert it with "
                                "`python3 tools/hf_to_safetensors.py " + path.string() + "`");
            throw DataError("init_from: folder '" + path.string() +
                            "' holds neither model.safetensors nor a checkpoint (a `latest` file); give a checkpoint "
                            "folder, a run folder or a Hugging Face model folder");
        }
    }
    if (resolved) *resolved = file;
    return load_safetensors(file, backend);
}

}  // namespace lab
