#include "proxy/io_pool.hpp"

#include <algorithm>

#include <boost/asio/post.hpp>

namespace tandem::proxy {
namespace asio = boost::asio;

void run_io(asio::io_context& ioc, std::chrono::microseconds spin, spin_group* group) {
  if (spin.count() <= 0) {
    ioc.run();
    return;
  }
  // Like run(), but a thread that runs out of handlers polls (epoll with no wait, on this
  // thread's own context) for a short while before it sleeps in epoll.
  using steady = std::chrono::steady_clock;
  spin_group alone;
  spin_group& g = group != nullptr ? *group : alone;
  const auto now = [] { return steady::now().time_since_epoch().count(); };
  const std::int64_t spin_ticks = std::chrono::duration_cast<steady::duration>(spin).count();
  g.last_work.store(now(), std::memory_order_relaxed);
  while (!ioc.stopped()) {
    if (ioc.poll() > 0) {
      g.last_work.store(now(), std::memory_order_relaxed);
    } else if (now() - g.last_work.load(std::memory_order_relaxed) < spin_ticks) {
      std::this_thread::yield();
    } else {
      ioc.run_one();
      g.last_work.store(now(), std::memory_order_relaxed);
      // Work after a sleep: wake the group's other threads, so that they spin too.
      for (auto* other : g.members) {
        if (other != &ioc) asio::post(*other, [] {});
      }
    }
  }
}

io_pool::io_pool(int threads, std::chrono::microseconds spin) : spin_(spin) {
  for (int i = 0; i < std::max(threads, 1); ++i) {
    auto t = std::make_unique<io_thread>();
    t->guard = std::make_unique<asio::executor_work_guard<asio::io_context::executor_type>>(t->ioc.get_executor());
    group_.members.push_back(&t->ioc);
    threads_.push_back(std::move(t));
  }
}

io_pool::~io_pool() { join(); }

asio::any_io_executor io_pool::next() {
  return threads_[next_.fetch_add(1, std::memory_order_relaxed) % threads_.size()]->ioc.get_executor();
}

void io_pool::start() {
  if (started_.exchange(true)) return;
  for (auto& t : threads_) {
    t->thread = std::thread([this, ioc = &t->ioc] { run_io(*ioc, spin_, &group_); });
  }
}

void io_pool::run() {
  start();
  control_.run();
  join();
}

void io_pool::release() {
  if (released_.exchange(true)) return;
  // reset() only drops the context's count of outstanding work (atomic): safe from any thread.
  for (auto& t : threads_) t->guard->reset();
}

void io_pool::join() {
  release();
  for (auto& t : threads_) {
    if (t->thread.joinable()) t->thread.join();
  }
}

}  // namespace tandem::proxy
