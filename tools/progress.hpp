// Progress a person can follow: on a terminal, live bars (one per table being copied, and a
// total) with rows/s and ETA, redrawn in place; elsewhere, plain lines in the migration guide's
// shape. Thread-safe.
#pragma once

#include <chrono>
#include <map>
#include <mutex>
#include <ostream>
#include <string>
#include <vector>

namespace tandem::tools {

class progress {
 public:
  enum class style { bars, lines, none };
  // "auto" (bars when stdout is a terminal, else lines), "bars", "lines" or "none".
  static style parse(const std::string& name);

  progress(std::ostream& out, style s, std::int64_t total_rows);
  ~progress();

  void table_started(const std::string& table, std::int64_t total, std::int64_t already);
  void table_progressed(const std::string& table, std::int64_t copied);
  void table_finished(const std::string& table, std::int64_t copied, std::int64_t total, const std::string& error);
  // A line printed above the live bars (or as it is).
  void say(const std::string& line);
  // Removes the live bars for good.
  void close();

  // "1,234,567".
  static std::string count(std::int64_t n);
  // "1:02:03" or "0:04".
  static std::string duration(double seconds);

 private:
  using clock = std::chrono::steady_clock;
  struct active {
    std::int64_t total = 0, copied = 0, at_start = 0, last_line_copied = 0;
    clock::time_point start, last_line;
  };
  void redraw(bool force);
  void erase_bars();
  std::string bar_line(const std::string& name, std::int64_t copied, std::int64_t total, double rate) const;

  std::mutex mu_;
  std::ostream& out_;
  style style_;
  std::int64_t total_rows_;
  std::int64_t done_rows_ = 0;  // rows of finished tables, plus progress of active ones
  std::int64_t start_rows_ = 0; // copied before this run (resume)
  clock::time_point start_ = clock::now();
  clock::time_point last_draw_{};
  std::map<std::string, active> active_;
  std::vector<std::string> order_;  // active tables in start order
  int drawn_lines_ = 0;
};

}  // namespace tandem::tools
