#!/usr/bin/env python3
"""The framework's layers depend one way only (docs/architecture.md, "Source layout").

framework/src/<layer>/ holds each layer's sources. The order of the layers, lowest first, is read
from framework/CMakeLists.txt (LAB_CORE_LAYERS, then LAB_HOST_LAYERS), the one place that also
decides which library a layer goes into. A public header belongs to the layer of the source file
with the same name (lab/ops.h -> src/nn/ops.cpp), or to the layer HEADER_LAYERS gives it when no
source file has its name. A file may include headers of its own layer and of lower ones; an
include that points up a layer fails this test with the file, the line and both layers.

    python3 tests/scripts/test_layers.py SOURCE_DIR
"""
import pathlib
import re
import sys

# Public headers with no .cpp of their name: the layer that owns what they declare.
HEADER_LAYERS = {
    "error.h": "base", "hash.h": "base", "options.h": "base", "rng.h": "base", "utf8.h": "base",
    "text_file.h": "base", "version.h": "base", "sdk_abi.h": "base", "memory.h": "base",
    "dtype.h": "tensor", "element.h": "tensor", "host_device.h": "tensor", "allocator.h": "tensor",
    "backend.h": "tensor",
    "host_backend.h": "kernels", "kernel_checks.h": "kernels", "kernels.h": "kernels",
    "model.h": "nn", "module.h": "nn", "build_context.h": "nn", "metric_goal.h": "base",
    "optimizer.h": "plugin", "tokenizer.h": "plugin", "plugin.h": "plugin", "registry.h": "plugin",
    "task.h": "plugin",
    "communicator.h": "run", "stop_signals.h": "run", "config.h": "run",
}


def layer_order(source_dir):
    text = (source_dir / "framework" / "CMakeLists.txt").read_text()
    order = []
    for var in ("LAB_CORE_LAYERS", "LAB_HOST_LAYERS"):
        m = re.search(r"set\(%s ([a-z_ ]+)\)" % var, text)
        if not m:
            sys.exit("framework/CMakeLists.txt: no set(%s ...) line to read the layer order from" % var)
        order += m.group(1).split()
    return order


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    root = pathlib.Path(sys.argv[1])
    src = root / "framework" / "src"
    include = root / "framework" / "include" / "lab"
    order = layer_order(root)
    rank = {name: i for i, name in enumerate(order)}

    layer_of = {}  # "lab/x.h" or "src/<layer>/x.h" -> layer
    for layer in order:
        for f in (src / layer).glob("*"):
            if f.suffix == ".cpp" and (include / (f.stem + ".h")).exists():
                layer_of["lab/" + f.stem + ".h"] = layer
    errors = []
    for h in sorted(include.glob("*.h*")):
        name = h.name.removesuffix(".in")
        key = "lab/" + name
        if name in HEADER_LAYERS:
            if key in layer_of and layer_of[key] != HEADER_LAYERS[name]:
                errors.append("tests/scripts/test_layers.py: HEADER_LAYERS puts %s in %s, but its source file "
                              "is in src/%s; remove the table entry" % (name, HEADER_LAYERS[name], layer_of[key]))
            layer_of[key] = HEADER_LAYERS[name]
        elif key not in layer_of:
            errors.append("framework/include/lab/%s: no src/<layer>/%s.cpp, so its layer is unknown; add it to "
                          "HEADER_LAYERS in tests/scripts/test_layers.py" % (name, h.stem))

    files = [(h, layer_of.get("lab/" + h.name.removesuffix(".in"))) for h in sorted(include.glob("*.h*"))]
    for layer in order:
        if not (src / layer).is_dir():
            errors.append("framework/CMakeLists.txt names layer '%s', but framework/src/%s does not exist" % (layer, layer))
            continue
        files += [(f, layer) for f in sorted((src / layer).glob("*")) if f.suffix in (".cpp", ".h")]
    for d in sorted(p for p in src.iterdir() if p.is_dir()):
        if d.name not in rank:
            errors.append("framework/src/%s is no layer of framework/CMakeLists.txt" % d.name)

    includes = 0
    for path, layer in files:
        if layer is None:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            m = re.match(r'\s*#\s*include\s+"lab/([^"]+)"', line)
            if not m:
                continue
            includes += 1
            target = layer_of.get("lab/" + m.group(1))
            if target is None:
                errors.append("%s:%d: includes lab/%s, which is no public header" % (path.relative_to(root), n, m.group(1)))
            elif rank[target] > rank[layer]:
                errors.append("%s:%d: the %s layer includes lab/%s of the %s layer above it; dependencies point "
                              "down only (%s); move what it needs to a lower layer"
                              % (path.relative_to(root), n, layer, m.group(1), target, " <- ".join(order)))
    for e in errors:
        print(e)
    print("%d files, %d lab/ includes, layers %s: %s"
          % (len(files), includes, " <- ".join(order), "%d wrong" % len(errors) if errors else "all point down"))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
