#include "proxy/store_lock.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <thread>

#include <boost/json/serialize.hpp>

namespace tandem::proxy {
namespace {

std::string read_all(int fd) {
  std::string out;
  char buf[4096];
  for (off_t at = 0;;) {
    const auto n = ::pread(fd, buf, sizeof buf, at);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
    at += n;
  }
  return out;
}

}  // namespace

std::string store_lock::path_for(const std::string& database_path) {
  std::error_code ec;
  auto canonical = std::filesystem::weakly_canonical(std::filesystem::absolute(database_path, ec), ec);
  if (ec) canonical = database_path;
  return canonical.string() + ".tandem.lock";
}

std::unique_ptr<store_lock> store_lock::acquire(const std::string& database_path, const owner_identity& self,
                                                backends::clock::time_point deadline,
                                                const std::function<void(const owner_identity&)>& waiting) {
  if (auto parent = std::filesystem::path(database_path).parent_path(); !parent.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(parent, ec);
  }
  const std::string path = path_for(database_path);
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("cannot open the lock file " + path + ": " + std::strerror(errno));
  bool told = false;
  for (;;) {
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) break;
    if (errno == EINTR) continue;
    if (errno != EWOULDBLOCK) {
      const int e = errno;
      ::close(fd);
      throw std::runtime_error("cannot lock " + path + ": " + std::strerror(e));
    }
    // The holder writes its description right after locking: a reader may find it empty.
    const auto owner = owner_identity::parse(read_all(fd));
    if (backends::clock::now() >= deadline) {
      ::close(fd);
      throw owner_conflict("another tandem owns the SQLite database " + database_path + ": " + owner.describe() +
                           " (lock file " + path + "). Stop it first, or let this one wait for it to exit: "
                           "--wait-for-owner SECONDS (ownership.wait_for_owner_ms)");
    }
    if (!told && waiting) waiting(owner);
    told = true;
    std::this_thread::sleep_for(std::min<backends::clock::duration>(std::chrono::milliseconds(100),
                                                                    deadline - backends::clock::now()));
  }
  std::unique_ptr<store_lock> lock(new store_lock(fd, path));
  lock->describe(self);
  return lock;
}

store_lock::~store_lock() {
  if (::ftruncate(fd_, 0) != 0) {
    // Nothing to do: the next owner truncates it too.
  }
  ::close(fd_);
}

void store_lock::describe(const owner_identity& self) {
  const std::string text = boost::json::serialize(self.to_json()) + "\n";
  // Best effort: the description is for messages; the lock itself is what excludes.
  if (::ftruncate(fd_, 0) != 0) return;
  for (std::size_t done = 0; done < text.size();) {
    const auto n = ::pwrite(fd_, text.data() + done, text.size() - done, static_cast<off_t>(done));
    if (n <= 0) return;
    done += static_cast<std::size_t>(n);
  }
}

}  // namespace tandem::proxy
