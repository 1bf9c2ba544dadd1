#include "proxy/rollout.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace tandem::proxy {
namespace {

using steady = std::chrono::steady_clock;
namespace json = boost::json;

// p99 (upper bucket bound) of the observations between two bucket snapshots.
double window_p99(const std::vector<std::uint64_t>& from, const std::vector<std::uint64_t>& to) {
  std::uint64_t total = 0;
  std::vector<std::uint64_t> d(to.size());
  for (std::size_t i = 0; i < to.size(); ++i) total += d[i] = to[i] - (i < from.size() ? from[i] : 0);
  if (total == 0) return 0;
  const auto rank = static_cast<std::uint64_t>(0.99 * static_cast<double>(total - 1)) + 1;
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < d.size(); ++i) {
    seen += d[i];
    if (seen >= rank) return i < histogram::k_bounds.size() ? histogram::k_bounds[i] : histogram::k_bounds.back() * 2;
  }
  return histogram::k_bounds.back() * 2;
}

class router_target final : public rollout_target {
 public:
  explicit router_target(router& r) : r_(r) {}
  mode current_mode() const override { return r_.current_mode(); }
  int read_percent() const override { return r_.read_percent(); }
  void set_read_percent(int percent) override { r_.set_read_percent(percent); }
  dual_metrics& metrics() override { return r_.metrics(); }

 private:
  router& r_;
};

}  // namespace

rollout::rollout(router& r, rollout_options options, int stage, bool held, event_sink sink)
    : rollout(std::make_unique<router_target>(r), nullptr, std::move(options), stage, held, std::move(sink), [] { return steady::now(); }) {}

rollout::rollout(rollout_target& target, rollout_options options, int stage, bool held, event_sink sink, rollout_clock now)
    : rollout(nullptr, &target, std::move(options), stage, held, std::move(sink), std::move(now)) {}

rollout::rollout(std::unique_ptr<rollout_target> owned, rollout_target* borrowed, rollout_options options, int stage, bool held,
                 event_sink sink, rollout_clock now)
    : own_target_(std::move(owned)),
      route_(borrowed ? *borrowed : *own_target_),
      now_(std::move(now)),
      options_(std::move(options)),
      sink_(std::move(sink)),
      stage_(std::clamp(stage, -1, static_cast<int>(options_.stages.size()) - 1)),
      held_(held),
      last_held_stage_(std::max(stage_ - 1, -1)),
      stage_since_(now_()) {
  // Before the first stage the read split is the operator's (config or `split`): left alone.
  std::lock_guard lock(mu_);
  if (stage_ >= 0) go_to_locked(stage_);
  route_.metrics().rollout_stage.store(stage_);
}

rollout::~rollout() { stop(); }

void rollout::start() {
  thread_ = std::thread([this] {
    std::unique_lock lock(mu_);
    while (!stop_) {
      cv_.wait_for(lock, options_.tick, [&] { return stop_; });
      if (stop_) break;
      lock.unlock();
      evaluate();
      lock.lock();
    }
  });
}

void rollout::stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void rollout::go_to_locked(int stage) {
  stage_ = stage;
  stage_since_ = now_();
  route_.set_read_percent(stage < 0 ? 0 : options_.stages[static_cast<std::size_t>(stage)].percent);
  route_.metrics().rollout_stage.store(stage);
  samples_.clear();  // guards judge the new stage on its own traffic, from now on
  samples_.push_back(take_sample());
}

rollout::sample rollout::take_sample() const {
  const auto& m = route_.metrics();
  sample s;
  s.at = now_();
  s.d1_reads = m.reads_d1.load();
  s.d1_errors = m.read_errors_d1.load();
  s.verification_failures = m.verification_failures.load();
  s.shadow_mismatches = m.shadow_mismatches.load();
  for (std::size_t i = 0; i <= histogram::k_bounds.size(); ++i) s.d1_latency_buckets.push_back(m.read_latency_d1.bucket(i));
  return s;
}

void rollout::evaluate() {
  const sample now = take_sample();
  const auto& m = route_.metrics();
  std::string guard;
  double figure = 0, limit = 0;
  std::unique_lock lock(mu_);
  const rollout_guards g = options_.guards;  // a copy: reconfigure() may replace them
  samples_.push_back(now);
  while (samples_.size() > 1 && samples_[1].at <= now.at - g.window) samples_.pop_front();
  const sample& base = samples_.front();
  if (stage_ >= 0 && is_dual(route_.current_mode())) {
    const auto reads = now.d1_reads - base.d1_reads;
    const auto errors = now.d1_errors - base.d1_errors;
    const double rate = reads ? static_cast<double>(errors) / static_cast<double>(reads) : 0;
    const double p99 = window_p99(base.d1_latency_buckets, now.d1_latency_buckets);
    if (reads >= g.min_reads && rate > g.max_d1_error_rate) {
      guard = "d1_error_rate", figure = rate, limit = g.max_d1_error_rate;
    } else if (reads >= g.min_reads && p99 > g.max_d1_read_p99_ms) {
      guard = "d1_read_p99_ms", figure = p99, limit = g.max_d1_read_p99_ms;
    } else if (m.lag_entries.load() > g.max_lag_entries) {
      guard = "replication_lag_entries", figure = static_cast<double>(m.lag_entries.load()), limit = static_cast<double>(g.max_lag_entries);
    } else if (m.lag_ms.load() > g.max_lag_ms) {
      guard = "replication_lag_ms", figure = static_cast<double>(m.lag_ms.load()), limit = static_cast<double>(g.max_lag_ms);
    } else if (now.verification_failures - base.verification_failures > g.max_verification_failures) {
      guard = "verification_failures", figure = static_cast<double>(now.verification_failures - base.verification_failures),
      limit = static_cast<double>(g.max_verification_failures);
    } else if (now.shadow_mismatches - base.shadow_mismatches > g.max_shadow_mismatches) {
      guard = "shadow_mismatches", figure = static_cast<double>(now.shadow_mismatches - base.shadow_mismatches),
      limit = static_cast<double>(g.max_shadow_mismatches);
    }
  }
  if (!guard.empty()) {
    const int from = stage_;
    go_to_locked(std::min(last_held_stage_, stage_ - 1));
    held_ = true;
    const int to = stage_;
    const int percent = route_.read_percent();
    last_breach_ = guard + " " + std::to_string(figure) + " > " + std::to_string(limit);
    lock.unlock();
    route_.metrics().rollout_fallbacks.fetch_add(1);
    spdlog::warn("rollout: guard {} breached ({} > {}): back from stage {} to stage {} ({}% of reads on D1), held", guard,
                 figure, limit, from, to, percent);
    if (sink_) {
      sink_("guard breached", json::object{{"guard", guard}, {"figure", figure}, {"limit", limit}, {"fromStage", from},
                                           {"toStage", to}, {"readPercent", percent}, {"held", true}});
    }
    return;
  }
  if (stage_ < 0 || held_ || !options_.auto_advance) return;
  const auto& current = options_.stages[static_cast<std::size_t>(stage_)];
  if (now_() - stage_since_ < current.hold) return;
  last_held_stage_ = stage_;
  if (stage_ + 1 >= static_cast<int>(options_.stages.size())) return;
  const int from = stage_;
  go_to_locked(stage_ + 1);
  const int percent = route_.read_percent();
  lock.unlock();
  spdlog::info("rollout: stage {} held; advancing to stage {} ({}% of reads on D1)", from, from + 1, percent);
  if (sink_) sink_("advanced", json::object{{"fromStage", from}, {"toStage", from + 1}, {"readPercent", percent}});
}

void rollout::reconfigure(rollout_options o) {
  std::lock_guard lock(mu_);
  const int old_percent = stage_ >= 0 ? options_.stages[static_cast<std::size_t>(stage_)].percent : -1;
  options_ = std::move(o);
  const int last = static_cast<int>(options_.stages.size()) - 1;
  if (stage_ > last) {
    go_to_locked(last);  // the stage it was at no longer exists: the last one that does
  } else if (stage_ >= 0 && options_.stages[static_cast<std::size_t>(stage_)].percent != old_percent) {
    // Same stage, new percentage: applied now; the time held so far still counts.
    route_.set_read_percent(options_.stages[static_cast<std::size_t>(stage_)].percent);
  }
  last_held_stage_ = std::min(last_held_stage_, stage_);
  cv_.notify_all();  // the tick may have changed
}

std::string rollout::next() {
  if (!is_dual(route_.current_mode())) return "the rollout moves reads to D1 in a dual mode; the mode is " + std::string(to_string(route_.current_mode()));
  std::lock_guard lock(mu_);
  if (stage_ + 1 >= static_cast<int>(options_.stages.size())) return "already at the last stage";
  if (stage_ >= 0 && now_() - stage_since_ >= options_.stages[static_cast<std::size_t>(stage_)].hold) last_held_stage_ = stage_;
  go_to_locked(stage_ + 1);
  return {};
}

std::string rollout::prev() {
  std::lock_guard lock(mu_);
  if (stage_ < 0) return "already before the first stage (0% of reads on D1)";
  go_to_locked(stage_ - 1);
  last_held_stage_ = std::min(last_held_stage_, stage_ - 1);
  return {};
}

void rollout::hold() {
  std::lock_guard lock(mu_);
  held_ = true;
}

void rollout::release() {
  std::lock_guard lock(mu_);
  held_ = false;
}

void rollout::fallback() {
  std::lock_guard lock(mu_);
  go_to_locked(-1);
  last_held_stage_ = -1;
  held_ = true;
}

rollout::place rollout::where() const {
  std::lock_guard lock(mu_);
  return {stage_, held_, last_held_stage_, stage_since_};
}

void rollout::restore(const place& p) {
  std::lock_guard lock(mu_);
  const int last = static_cast<int>(options_.stages.size()) - 1;
  if (p.stage != stage_) go_to_locked(std::min(p.stage, last));
  stage_since_ = p.since;
  held_ = p.held;
  last_held_stage_ = std::min(p.last_held_stage, stage_);
}

int rollout::stage() const {
  std::lock_guard lock(mu_);
  return stage_;
}

bool rollout::held() const {
  std::lock_guard lock(mu_);
  return held_;
}

json::object rollout::status() const {
  std::lock_guard lock(mu_);
  json::array stages;
  for (const auto& s : options_.stages) {
    stages.push_back(json::object{{"percent", s.percent}, {"holdSeconds", std::chrono::duration_cast<std::chrono::seconds>(s.hold).count()}});
  }
  const auto in_stage = std::chrono::duration_cast<std::chrono::seconds>(now_() - stage_since_).count();
  return {{"stage", stage_},
          {"held", held_},
          {"autoAdvance", options_.auto_advance},
          {"lastHeldStage", last_held_stage_},
          {"secondsInStage", in_stage},
          {"lastBreach", last_breach_},
          {"stages", std::move(stages)}};
}

}  // namespace tandem::proxy
