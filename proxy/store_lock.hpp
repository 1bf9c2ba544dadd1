// One owner per SQLite file: an exclusive flock(2) on a lock file next to the database,
// `<database>.tandem.lock`, held for the owner's life and holding its description (the file
// says who owns the database, for the message another instance prints).
//
// Why a separate file and flock(2): SQLite locks the database with POSIX fcntl locks, and
// closing any descriptor of a file drops every POSIX lock the process holds on it (SQLite opens
// and closes the database file with each connection). A flock on another file is independent of
// both: it lasts until this process closes it or dies (kill -9 included: the kernel releases it),
// and SQLite's own locking, so every tool that reads the database (backup, validate), is
// untouched. The database's path is made canonical first, so a symlink or a relative path names
// the same lock. Local filesystems only: on NFS, Linux emulates flock with fcntl locks on the
// server, which still excludes, but a stale lock after a client crash is the server's to clear.
#pragma once

#include <functional>
#include <memory>
#include <stdexcept>
#include <string>

#include "backends/store.hpp"
#include "proxy/owner.hpp"

namespace tandem::proxy {

// Another live tandem owns what this one needs (the SQLite file, D1's replication role). The
// message names it and says what to do. Start-up only: `tandem serve` exits with status 3.
class owner_conflict : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class store_lock {
 public:
  // The lock file of a database path: its canonical form + ".tandem.lock".
  static std::string path_for(const std::string& database_path);

  // Takes the lock of `database_path` (creating the lock file and its directory if missing)
  // and writes `self` into it. While another process holds it, polls until `deadline`, calling
  // `waiting(owner)` once, when first found held. Throws owner_conflict, naming the owner, when
  // it is still held at the deadline, and std::runtime_error when the lock file cannot be opened.
  static std::unique_ptr<store_lock> acquire(const std::string& database_path, const owner_identity& self,
                                             backends::clock::time_point deadline,
                                             const std::function<void(const owner_identity&)>& waiting);

  // Empties the file and releases the lock. The file stays: removing it would let a process
  // that opened it just before lock an inode nobody else can find.
  ~store_lock();
  store_lock(const store_lock&) = delete;
  store_lock& operator=(const store_lock&) = delete;

  // Rewrites the owner's description (the listen address, once known).
  void describe(const owner_identity& self);
  const std::string& path() const { return path_; }

 private:
  store_lock(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  int fd_;
  std::string path_;
};

}  // namespace tandem::proxy
