#include "proxy/metrics.hpp"

#include <algorithm>
#include <cstdio>

namespace tandem::proxy {

void histogram::record(double ms) noexcept {
  const auto it = std::lower_bound(k_bounds.begin(), k_bounds.end(), ms);
  buckets_[static_cast<std::size_t>(it - k_bounds.begin())].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_us_.fetch_add(static_cast<std::uint64_t>(std::max(ms, 0.0) * 1000.0), std::memory_order_relaxed);
}

double histogram::quantile(double q) const noexcept {
  const std::uint64_t n = count();
  if (n == 0) return 0;
  const auto rank = static_cast<std::uint64_t>(q * static_cast<double>(n - 1)) + 1;
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < k_bounds.size(); ++i) {
    seen += bucket(i);
    if (seen >= rank) return k_bounds[i];
  }
  return k_bounds.back();
}

boost::json::object dual_metrics::snapshot() const {
  boost::json::object o;
#define TANDEM_PUT(member, name, help) o[name] = member.load(std::memory_order_relaxed);
  TANDEM_COUNTERS(TANDEM_PUT)
  TANDEM_GAUGES(TANDEM_PUT)
#undef TANDEM_PUT
#define TANDEM_PUT(member, name, help)                                                               \
  o[name] = boost::json::object{{"count", member.count()}, {"average", member.average()},           \
                                {"p50", member.quantile(0.5)}, {"p99", member.quantile(0.99)}};
  TANDEM_HISTOGRAMS(TANDEM_PUT)
#undef TANDEM_PUT
  o["averagePrimaryLatency"] = primary_latency.average();
  o["averageSecondaryLatency"] = secondary_latency.average();
  return o;
}

std::string dual_metrics::prometheus() const {
  std::string out;
  auto seconds = [](double ms) {
    char text[32];
    std::snprintf(text, sizeof text, "%g", ms / 1000);
    return std::string(text);
  };
  auto head = [&](const std::string& name, const char* help, const char* type) {
    out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  };
#define TANDEM_PUT(member, wire, help)                                            \
  head("tandem_" #member "_total", help, "counter");                              \
  out += "tandem_" #member "_total " + std::to_string(member.load(std::memory_order_relaxed)) + "\n";
  TANDEM_COUNTERS(TANDEM_PUT)
#undef TANDEM_PUT
  // Prometheus names carry base units (promtool lints "_ms"): the lag gauge and the latency
  // histograms are exported in seconds; the JSON snapshot keeps the guide's milliseconds.
#define TANDEM_PUT(member, wire, help)                                                                          \
  if (std::string_view(#member) == "lag_ms") {                                                                  \
    head("tandem_lag_seconds", help, "gauge");                                                                  \
    out += "tandem_lag_seconds " + seconds(static_cast<double>(member.load(std::memory_order_relaxed))) + "\n"; \
  } else {                                                                                                      \
    head("tandem_" #member, help, "gauge");                                                                     \
    out += "tandem_" #member " " + std::to_string(member.load(std::memory_order_relaxed)) + "\n";              \
  }
  TANDEM_GAUGES(TANDEM_PUT)
#undef TANDEM_PUT
  auto put_histogram = [&](const std::string& name, const char* help, const histogram& h) {
    head(name, help, "histogram");
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < histogram::k_bounds.size(); ++i) {
      cumulative += h.bucket(i);
      out += name + "_bucket{le=\"" + seconds(histogram::k_bounds[i]) + "\"} " + std::to_string(cumulative) + "\n";
    }
    out += name + "_bucket{le=\"+Inf\"} " + std::to_string(h.count()) + "\n";
    out += name + "_sum " + seconds(h.sum()) + "\n" + name + "_count " + std::to_string(h.count()) + "\n";
  };
#define TANDEM_PUT(member, wire, help) put_histogram("tandem_" #member "_seconds", help, member);
  TANDEM_HISTOGRAMS(TANDEM_PUT)
#undef TANDEM_PUT
  return out;
}

}  // namespace tandem::proxy
