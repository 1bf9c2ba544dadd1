#include "tools/progress.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace tandem::tools {

progress::style progress::parse(const std::string& name) {
  if (name == "bars") return style::bars;
  if (name == "lines") return style::lines;
  if (name == "none") return style::none;
  return ::isatty(STDOUT_FILENO) ? style::bars : style::lines;
}

progress::progress(std::ostream& out, style s, std::int64_t total_rows) : out_(out), style_(s), total_rows_(total_rows) {}

progress::~progress() { close(); }

std::string progress::count(std::int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return (n < 0 ? "-" : "") + out;
}

std::string progress::duration(double seconds) {
  if (seconds < 0 || seconds > 1e7) return "?";
  const auto s = static_cast<long>(seconds + 0.5);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", s / 3600, s / 60 % 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%ld:%02ld", s / 60, s % 60);
  return buf;
}

std::string progress::bar_line(const std::string& name, std::int64_t copied, std::int64_t total, double rate) const {
  constexpr int width = 24;
  const double f = total > 0 ? std::clamp(static_cast<double>(copied) / static_cast<double>(total), 0.0, 1.0) : 1.0;
  const int full = static_cast<int>(f * width);
  std::string bar;
  for (int i = 0; i < width; ++i) bar += i < full ? "█" : "░";
  char buf[256];
  const double eta = rate > 0 ? static_cast<double>(total - copied) / rate : -1;
  std::string shown = name.size() > 24 ? name.substr(0, 23) + "…" : name;
  std::snprintf(buf, sizeof buf, "  %-24s %s %3d%%  %s/%s rows  %s rows/s  ETA %s", shown.c_str(), bar.c_str(),
                static_cast<int>(f * 100), count(copied).c_str(), count(total).c_str(), count(static_cast<std::int64_t>(rate)).c_str(),
                duration(eta).c_str());
  return buf;
}

void progress::erase_bars() {
  if (drawn_lines_ == 0) return;
  out_ << "\x1b[" << drawn_lines_ << "F\x1b[J";  // to the first bar line, then clear below
  drawn_lines_ = 0;
}

void progress::redraw(bool force) {
  if (style_ != style::bars) return;
  const auto now = clock::now();
  if (!force && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  erase_bars();
  std::int64_t running = done_rows_;
  constexpr std::size_t k_max_bars = 6;  // small tables share batches: many can be in progress at once
  for (std::size_t i = 0; i < order_.size(); ++i) {
    const auto& a = active_.at(order_[i]);
    running += a.copied;
    if (i >= k_max_bars) continue;
    const double secs = std::chrono::duration<double>(now - a.start).count();
    const double rate = secs > 0.05 ? static_cast<double>(a.copied - a.at_start) / secs : 0;
    out_ << bar_line(order_[i], a.copied, a.total, rate) << "\n";
    ++drawn_lines_;
  }
  if (order_.size() > k_max_bars) {
    out_ << "  … and " << order_.size() - k_max_bars << " more tables in progress\n";
    ++drawn_lines_;
  }
  const double secs = std::chrono::duration<double>(now - start_).count();
  const double rate = secs > 0.05 ? static_cast<double>(running - start_rows_) / secs : 0;
  out_ << bar_line("total", running, total_rows_, rate) << "\n";
  ++drawn_lines_;
  out_.flush();
}

void progress::table_started(const std::string& table, std::int64_t total, std::int64_t already) {
  std::lock_guard lock(mu_);
  if (style_ == style::none) return;
  auto& a = active_[table];
  a.total = total;
  a.copied = a.at_start = a.last_line_copied = already;
  a.start = a.last_line = clock::now();
  start_rows_ += already;
  order_.push_back(table);
  if (style_ == style::lines) {
    out_ << "📦 Migrating table: " << table << "\n";
    out_ << "   Total rows: " << count(total) << (already > 0 ? " (" + count(already) + " copied before, resuming)" : "") << "\n";
    out_.flush();
  }
  redraw(true);
}

void progress::table_progressed(const std::string& table, std::int64_t copied) {
  std::lock_guard lock(mu_);
  auto it = active_.find(table);
  if (it == active_.end()) return;
  auto& a = it->second;
  a.copied = copied;
  if (style_ == style::lines) {
    const auto now = clock::now();
    // A line per 25% or per 5 s, whichever comes first; the last one comes with "finished".
    const bool step = a.total > 0 && (copied - a.last_line_copied) * 4 >= a.total;
    if ((step || now - a.last_line > std::chrono::seconds(5)) && copied < a.total) {
      const double secs = std::chrono::duration<double>(now - a.start).count();
      char buf[200];
      std::snprintf(buf, sizeof buf, "   Progress: %s %d%% (%s/%s rows), %s rows/s", table.c_str(),
                    a.total > 0 ? static_cast<int>(100 * copied / a.total) : 100, count(copied).c_str(), count(a.total).c_str(),
                    count(secs > 0 ? static_cast<std::int64_t>(static_cast<double>(copied - a.at_start) / secs) : 0).c_str());
      out_ << buf << "\n";
      out_.flush();
      a.last_line = now;
      a.last_line_copied = copied;
    }
  }
  redraw(false);
}

void progress::table_finished(const std::string& table, std::int64_t copied, std::int64_t total, const std::string& error) {
  std::lock_guard lock(mu_);
  auto it = active_.find(table);
  if (it == active_.end()) {
    if (style_ == style::none) return;
    active_[table] = active{total, copied, copied, copied, clock::now(), clock::now()};
    order_.push_back(table);
    it = active_.find(table);
  }
  const double secs = std::chrono::duration<double>(clock::now() - it->second.start).count();
  active_.erase(it);
  order_.erase(std::remove(order_.begin(), order_.end(), table), order_.end());
  done_rows_ += copied;
  if (style_ == style::none) return;
  erase_bars();
  if (style_ == style::lines) {
    out_ << "   Progress: " << (total > 0 ? 100 * copied / total : 100) << "% (" << count(copied) << "/" << count(total) << " rows)\n";
  }
  if (error.empty()) {
    char buf[64];
    std::snprintf(buf, sizeof buf, " (%.2fs)", secs);
    out_ << "✓ Successfully migrated " << count(copied) << " rows" << (style_ == style::bars ? " of " + table : "")
         << (style_ == style::bars ? std::string(buf) : "") << "\n";
  } else {
    out_ << "✗ " << error << "\n";
  }
  out_.flush();
  redraw(true);
}

void progress::say(const std::string& line) {
  std::lock_guard lock(mu_);
  erase_bars();
  out_ << line << "\n";
  out_.flush();
  redraw(true);
}

void progress::close() {
  std::lock_guard lock(mu_);
  erase_bars();
  style_ = style::none;
  out_.flush();
}

}  // namespace tandem::tools
