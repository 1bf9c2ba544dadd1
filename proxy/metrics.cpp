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

namespace {

// The mode gauge's value as the name of its mode ("?" for a value that is none).
const char* mode_name(std::int64_t v) {
  return v >= 0 && static_cast<std::size_t>(v) < k_mode_names.size() ? k_mode_names[static_cast<std::size_t>(v)] : "?";
}

std::string seconds(double ms) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", ms / 1000);
  return std::string(text);
}

// Writes the Prometheus exposition of one metric of each kind (metrics.hpp), under its member's name.
class exposition {
 public:
  void counter(const std::string& member, const char* help, std::uint64_t v) {
    head("tandem_" + member + "_total", help, "counter");
    out_ += "tandem_" + member + "_total " + std::to_string(v) + "\n";
  }
  void gauge(const std::string& member, const char* help, std::int64_t v) {
    // Prometheus names carry base units (promtool lints "_ms"): the lag is exported in seconds;
    // the JSON snapshot keeps the guide's milliseconds.
    if (member == "lag_ms") {
      head("tandem_lag_seconds", help, "gauge");
      out_ += "tandem_lag_seconds " + seconds(static_cast<double>(v)) + "\n";
      return;
    }
    head("tandem_" + member, help, "gauge");
    out_ += "tandem_" + member + " " + std::to_string(v) + "\n";
  }
  void mode(const std::string& member, const char* help, std::int64_t v) {
    head("tandem_" + member, help, "gauge");
    for (std::size_t i = 0; i < k_mode_names.size(); ++i) {
      out_ += "tandem_" + member + "{mode=\"" + k_mode_names[i] + "\"} " + (static_cast<std::int64_t>(i) == v ? "1" : "0") + "\n";
    }
  }
  void histogram(const std::string& member, const char* help, const proxy::histogram& h) {
    const std::string name = "tandem_" + member + "_seconds";
    head(name, help, "histogram");
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < histogram::k_bounds.size(); ++i) {
      cumulative += h.bucket(i);
      out_ += name + "_bucket{le=\"" + seconds(histogram::k_bounds[i]) + "\"} " + std::to_string(cumulative) + "\n";
    }
    out_ += name + "_bucket{le=\"+Inf\"} " + std::to_string(h.count()) + "\n";
    out_ += name + "_sum " + seconds(h.sum()) + "\n" + name + "_count " + std::to_string(h.count()) + "\n";
  }
  std::string text() && { return std::move(out_); }

 private:
  void head(const std::string& name, const char* help, const char* type) {
    out_ += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  }
  std::string out_;
};

}  // namespace

boost::json::object dual_metrics::snapshot() const {
  boost::json::object o;
  auto put_counter = [&](const char* name, std::uint64_t v) { o[name] = v; };
  auto put_gauge = [&](const char* name, std::int64_t v) { o[name] = v; };
  auto put_mode = [&](const char* name, std::int64_t v) { o[name] = mode_name(v); };
#define TANDEM_PUT(kind, member, name, help) put_##kind(name, member.load(std::memory_order_relaxed));
  TANDEM_METRICS(TANDEM_PUT)
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
  exposition out;
#define TANDEM_PUT(kind, member, wire, help) out.kind(#member, help, member.load(std::memory_order_relaxed));
  TANDEM_METRICS(TANDEM_PUT)
#undef TANDEM_PUT
#define TANDEM_PUT(member, wire, help) out.histogram(#member, help, member);
  TANDEM_HISTOGRAMS(TANDEM_PUT)
#undef TANDEM_PUT
  return std::move(out).text();
}

}  // namespace tandem::proxy
