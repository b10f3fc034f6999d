#!/usr/bin/env python3
"""The report of bench/run.sh and bench/bert.sh: labrun against its strongest PyTorch peer.

The scripts run every benchmark first and leave one file per run in a results folder; this program
reads them and prints, in this order, what the machine is (machine.txt), the matmul peaks of both
sides (peak.labrun.json from lab_bench_matmul, peak.pytorch.json from torch_matmul_peak.py) and
one table row per configuration and precision. It needs no torch: it only reads JSON.

Files, for a row ROW (a configuration name) and precision P (f32 or bf16):
  ROW.P.labrun.json   labrun's JSON line            ROW.P.ROLE.json    one PyTorch run per --peers role
  FILE.status         the command's exit status (absent: it did not run)
A run failed when its file holds no JSON line, its status is not 0, or its JSON has a
compile_error (torch.compile failed and the script timed eager mode instead: not a compile time).

The peer of a row is the fastest PyTorch run that succeeded, whichever role it was; the ratio is
peer ms/step over labrun ms/step (> 1: labrun is faster). MFU = model FLOPs per step / time / the
matmul peak of that side at that precision. The model FLOPs come from the runs' JSON
(model_flops_per_step: labrun's first, else a peer's) or from --flops-per-step.

Exit status 1 when a labrun run or a run of a role not named in --optional failed, else 0.
"""

import argparse
import json
import os
import sys

PROGRAM = "peer_report.py"


def warn(message):
    print(f"{PROGRAM}: {message}", file=sys.stderr)


def json_lines(path):
    """The JSON objects of a file's lines that start with '{'; [] for a missing or empty file."""
    if not os.path.exists(path):
        return []
    objects = []
    with open(path) as handle:
        for line in handle:
            if not line.startswith("{"):
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as error:
                warn(f"{path}: a line is not JSON ({error}): {line[:200].rstrip()}")
                continue
            if isinstance(value, dict):
                objects.append(value)
    return objects


def load_run(path):
    """(result, why it failed): the last JSON line of a run, or None and a reason."""
    status_path = path + ".status"
    status = open(status_path).read().strip() if os.path.exists(status_path) else None
    if status is None:
        return None, "not run"
    if status != "0":
        return None, f"exit status {status}; see its messages above"
    lines = json_lines(path)
    if not lines:
        return None, "printed no JSON line"
    result = lines[-1]
    if "compile_error" in result:
        return None, f"torch.compile failed: {result['compile_error']}"
    if not isinstance(result.get("ms_per_step"), (int, float)) or result["ms_per_step"] <= 0:
        return None, f"no positive ms_per_step in {json.dumps(result)[:200]}"
    return result, None


def load_peaks(results_dir):
    """{(side, precision): {"gflops": ..., "n": ...}} from both peak files."""
    peaks = {}
    for line in json_lines(os.path.join(results_dir, "peak.labrun.json")):
        if line.get("bench") == "matmul" and "dtype" in line and "gflops" in line:
            peaks[("labrun", line["dtype"])] = {"gflops": line["gflops"], "n": line.get("n")}
    for line in json_lines(os.path.join(results_dir, "peak.pytorch.json")):
        for precision, peak in (line.get("peaks") or {}).items():
            peaks[("pytorch", precision)] = peak
    return peaks


def shape_of(result):
    config = result.get("config") if isinstance(result.get("config"), dict) else {}
    shape = {key: result[key] for key in ("batch", "seq_len") if key in result}
    shape.update(config)
    return shape


# Keys that name how a side computes, not what it computes: they may differ between the sides.
NOT_SHAPE = {"attention", "fused_attention"}


def check_same_shape(row, precision, labrun, role, peer):
    left, right = shape_of(labrun), shape_of(peer)
    for key in sorted(set(left) & set(right) - NOT_SHAPE):
        if left[key] != right[key]:
            warn(f"warning: {row} {precision}: labrun {key}={left[key]} but PyTorch ({role}) {key}={right[key]}; "
                 "the ratio compares different work")


def model_flops(row, precision, results, fallback):
    """The row's model FLOPs per step: labrun's figure, else a peer's, else --flops-per-step."""
    figures = [(side, result["model_flops_per_step"]) for side, result in results
               if result is not None and isinstance(result.get("model_flops_per_step"), (int, float))]
    for side, figure in figures[1:]:
        # lab_bench_gpt prints 6 significant digits.
        if abs(figure - figures[0][1]) > 1e-5 * figures[0][1]:
            warn(f"warning: {row} {precision}: {figures[0][0]} counts {figures[0][1]:.6g} model FLOPs per step, "
                 f"{side} {figure:.6g}")
    return figures[0][1] if figures else fallback


def percent(flops, result, peak):
    if result is None or not flops or peak is None:
        return None
    return 100.0 * flops / (result["ms_per_step"] / 1000.0) / (peak["gflops"] * 1e9)


def parse_arguments(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", required=True, help="the folder of result files")
    parser.add_argument("--rows", required=True, help="configuration names, space-separated")
    parser.add_argument("--precisions", required=True, help="f32 and/or bf16, space-separated")
    parser.add_argument("--peers", required=True, help="the PyTorch roles, space-separated (e.g. 'eager compile')")
    parser.add_argument("--optional", default="", help="roles whose failure is reported but is no error")
    parser.add_argument("--impl", choices=("both", "labrun", "pytorch"), default="both")
    parser.add_argument("--title", default="", help="the first line of the report")
    parser.add_argument("--legend", action="append", default=[], help="a line under the table (repeatable)")
    parser.add_argument("--flops-per-step", type=float, default=0.0,
                        help="model FLOPs per step where no run's JSON has model_flops_per_step")
    parser.add_argument("--out", default="", help="append every result, peak and the machine as JSON lines")
    return parser.parse_args(argv)


def main(argv):
    arguments = parse_arguments(argv)
    rows, precisions = arguments.rows.split(), arguments.precisions.split()
    roles, optional = arguments.peers.split(), set(arguments.optional.split())
    want_labrun, want_pytorch = arguments.impl != "pytorch", arguments.impl != "labrun"
    results_dir = arguments.results

    machine_path = os.path.join(results_dir, "machine.txt")
    machine_lines = open(machine_path).read().splitlines() if os.path.exists(machine_path) else []
    peaks = load_peaks(results_dir)

    failed = False
    notes, table, records = [], [], []
    for row in rows:
        for precision in precisions:
            labrun, labrun_why = load_run(os.path.join(results_dir, f"{row}.{precision}.labrun.json"))
            if want_labrun and labrun is None:
                failed = True
                notes.append(f"{row} {precision}: labrun failed ({labrun_why})")
            peers = {}
            for role in roles:
                result, why = load_run(os.path.join(results_dir, f"{row}.{precision}.{role}.json"))
                peers[role] = result
                if want_pytorch and result is None and why != "not run":
                    failed |= role not in optional
                    notes.append(f"{row} {precision}: PyTorch {role} failed ({why})")
            succeeded = [(role, result) for role, result in peers.items() if result is not None]
            peer_role, peer = min(succeeded, key=lambda item: item[1]["ms_per_step"]) if succeeded else (None, None)
            if labrun is not None:
                for role, result in succeeded:
                    check_same_shape(row, precision, labrun, role, result)
            flops = model_flops(row, precision, [("labrun", labrun)] + succeeded, arguments.flops_per_step)
            labrun_mfu = percent(flops, labrun, peaks.get(("labrun", precision)))
            peer_mfu = percent(flops, peer, peaks.get(("pytorch", precision)))
            table.append((row, precision, labrun, peers, peer_role, peer, labrun_mfu, peer_mfu))
            for role, result in [("labrun", labrun)] + list(peers.items()):
                if result is None:
                    continue
                side = "labrun" if role == "labrun" else "pytorch"
                peak = peaks.get((side, precision))
                records.append({"model_flops_per_step": flops, **result, "bench_config": row,
                                "precision": precision, "role": role, "peer": role == peer_role,
                                "peak_gflops": peak["gflops"] if peak else None,
                                "mfu_percent": percent(flops, result, peak)})

    if arguments.title:
        print(arguments.title)
    for line in machine_lines:
        print(line)
    threads = sorted({record["threads"] for record in records if "threads" in record})
    print(f"matmul peaks in GFLOP/s (c = a @ b, square n x n: the best call at the best n), "
          f"{', '.join(map(str, threads)) or '-'} threads:")
    for side, name in (("labrun", "labrun oneDNN"), ("pytorch", "PyTorch")):
        cells = []
        for precision in ("f32", "bf16"):
            peak = peaks.get((side, precision))
            cells.append(f"{precision} {peak['gflops']:8.1f} (n {peak['n']})" if peak else f"{precision}        -")
        print(f"  {name:<14} {'   '.join(cells)}")
    if not peaks:
        print("  (no peak measured, so no MFU)")

    def ms(result):
        return f"{result['ms_per_step']:.1f}" if result is not None else "-"

    def mfu(value):
        return f"{value:.1f}%" if value is not None else "-"

    header = f"{'config':<18}{'prec':<6}{'labrun ms':>11}" + "".join(f"{role + ' ms':>13}" for role in roles) + \
             f"{'peer':>10}{'ratio':>8}{'labrun MFU':>12}{'peer MFU':>10}"
    print()
    print(header)
    print("-" * len(header))
    for row, precision, labrun, peers, peer_role, peer, labrun_mfu, peer_mfu in table:
        labrun_cell = ms(labrun) if want_labrun else "-"
        cells = "".join(f"{(ms(peers[role]) if want_pytorch else '-'):>13}" for role in roles)
        ratio = f"{peer['ms_per_step'] / labrun['ms_per_step']:.2f}" if labrun and peer else "-"
        print(f"{row:<18}{precision:<6}{labrun_cell:>11}{cells}{peer_role or '-':>10}{ratio:>8}"
              f"{mfu(labrun_mfu):>12}{mfu(peer_mfu):>10}")
    print()
    print("ratio = peer ms/step / labrun ms/step (> 1: labrun is faster); peer = the fastest PyTorch run.")
    print("MFU = model FLOPs per step / time / that side's matmul peak at that precision.")
    for line in arguments.legend:
        print(line)
    # labrun's benchmarks count the backend's system allocations and primitive builds during the
    # timed steps: 0 and 0 once its caches are warm, so anything else is time the table includes.
    steady = [f"{row} {precision} {labrun['allocs_per_step']:g} / {labrun['primitives_built']:g}"
              for row, precision, labrun, *_ in table
              if labrun is not None and "allocs_per_step" in labrun and "primitives_built" in labrun]
    if steady:
        print(f"labrun steady state (system allocations per step / primitives built while timed): {', '.join(steady)}")
    for note in notes:
        print(f"note: {note}")

    if arguments.out:
        with open(arguments.out, "a") as handle:
            handle.write(json.dumps({"bench": "machine", "lines": machine_lines}) + "\n")
            for (side, precision), peak in sorted(peaks.items()):
                handle.write(json.dumps(dict(peak, bench="matmul", side=side, dtype=precision)) + "\n")
            for record in records:
                handle.write(json.dumps(record) + "\n")
        print(f"\n{PROGRAM}: appended {len(records)} results, the peaks and the machine to {arguments.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
