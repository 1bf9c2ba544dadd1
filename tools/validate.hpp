// `tandem validate`'s front-end: its command line, the readable report and the JSON one. The
// comparison itself is tools/move/validate.hpp.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "tools/move/validate.hpp"

namespace tandem::tools {

// The readable report, and the JSON one ({"equal":..., "tables":[...]}).
void print_table_report(std::ostream& out, const validation_report& report, const table_report& t);
void print_summary(std::ostream& out, const validation_report& report);
std::string report_json(const validation_report& report);

// The command line.
struct validate_command {
  std::string first, second;  // endpoints: sqlite:PATH, d1, d1:ID
  d1_settings d1;
  validate_options options;
  std::vector<std::string> tables;
  bool json = false;
  long timeout_ms = 60000;
};
// 0 when equal, 1 when they differ, 2 when the comparison could not run.
int run_validate(const validate_command& c);

}  // namespace tandem::tools
