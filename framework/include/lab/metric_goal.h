// Which way a metric improves, declared by whoever records it (ResultStore::declare_metric, a
// task's EvalResult): a loss is minimized, an accuracy maximized, and a count, a learning rate or
// a gradient norm has no best value at all. labdb shows a "best" only for metrics declared
// minimize or maximize. On its own so that tasks (the plugin layer) name goals without including
// the results store above them.
#pragma once

namespace lab {

enum class MetricGoal { none, minimize, maximize };

}  // namespace lab
