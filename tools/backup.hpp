// `tandem backup` and `tandem restore`: their command lines and what they print. What they do is
// tools/move/backup.hpp (the backup files and their formats) and, for a restore into D1, migrate.
#pragma once

#include <string>

#include "tools/move/backup.hpp"

namespace tandem::tools {

struct backup_command {
  std::string from;  // sqlite:PATH, d1, d1:ID
  std::string dir;
  d1_settings d1;
  long timeout_ms = 60000;
};
// 0 on success (the path is printed), 1 when the backup failed, 2 for bad arguments.
int run_backup(const backup_command& c);

struct restore_command {
  std::string from;  // a .db file (or sqlite:PATH), or a D1 backup folder
  std::string to;    // sqlite:PATH, d1, d1:ID
  d1_settings d1;
  bool force = false;
  bool validate = true;
  std::string progress = "auto";
  long timeout_ms = 60000;
};
int run_restore(const restore_command& c);

}  // namespace tandem::tools
