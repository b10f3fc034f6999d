#include "lab/finite_difference.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace lab {

double weighted_sum(const std::vector<float>& y, const std::vector<float>& weights) {
    double total = 0.0;
    for (size_t i = 0; i < y.size(); ++i) total += static_cast<double>(y[i]) * static_cast<double>(weights[i]);
    return total;
}

FiniteDifferenceReport central_differences(const std::vector<float>& analytic, std::vector<float>& values,
                                           float eps, const std::function<double()>& loss) {
    FiniteDifferenceReport report;
    for (size_t j = 0; j < values.size(); ++j) {
        const float saved = values[j];
        values[j] = saved + eps;
        const double up = loss();
        values[j] = saved - eps;
        const double down = loss();
        values[j] = saved;
        const double numeric = (up - down) / (2.0 * static_cast<double>(eps));
        const double diff = std::fabs(static_cast<double>(analytic[j]) - numeric);
        const double ratio = diff / std::max(1.0, std::fabs(numeric));
        report.max_abs_diff = std::max(report.max_abs_diff, diff);
        if (!(ratio <= report.worst_ratio)) {  // also catches NaN, which counts as infinitely wrong
            report.worst_ratio = std::isnan(ratio) ? std::numeric_limits<double>::infinity() : ratio;
            report.worst_index = static_cast<int64_t>(j);
            report.worst_analytic = analytic[j];
            report.worst_numeric = numeric;
        }
    }
    return report;
}

}  // namespace lab
