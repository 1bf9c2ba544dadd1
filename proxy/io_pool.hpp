// The threads that run tandem's connections: one io_context per I/O thread, each run by that
// thread alone, and a control context for the listeners, the admin endpoint, the control socket
// and signals. Internal to proxy/.
//
// Why not one io_context shared by every I/O thread: a connection's handlers then need a strand
// (a mutex per hand-off), every completion posted from a store may wake another thread, and
// threads polling one scheduler fight over its lock. With a context per thread, a connection
// stays on one thread for its life, and what a store completes inline goes to that thread's
// private queue. A control command that blocks (a switch waiting for writes in flight) holds up
// the control context, never a connection.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>

namespace tandem::proxy {

// Threads that spin together: while any of them ran a handler within the spin, each polls
// rather than sleeps, and one that wakes from a sleep wakes the others. A CPU left idle sleeps,
// and waking it for the next request or response costs tens of microseconds (on a virtual
// machine most of all); the spinning threads keep the machine's CPUs awake while it serves.
struct spin_group {
  std::atomic<std::int64_t> last_work{0};           // steady_clock ticks of the last handler run
  std::vector<boost::asio::io_context*> members;  // fixed before the threads start
};

// Runs the io_context's handlers until it runs out of work or is stopped. With `spin` > 0 a
// thread that runs out of handlers polls for that long before it sleeps in epoll: a request
// arriving, or a store completing one, then finds it awake. Run by one thread per context;
// `group` (may be null: spin alone) as above.
void run_io(boost::asio::io_context& ioc, std::chrono::microseconds spin, spin_group* group = nullptr);

class io_pool {
 public:
  // `threads` I/O threads (at least 1), each spinning `spin` when idle. Nothing runs until run()
  // or start().
  io_pool(int threads, std::chrono::microseconds spin);
  ~io_pool();
  io_pool(const io_pool&) = delete;
  io_pool& operator=(const io_pool&) = delete;

  // The control context: listeners accept here; admin, control and signals run here.
  boost::asio::io_context& control() { return control_; }

  // Where the next connection runs: the I/O contexts in turn. Everything a connection does on
  // this executor runs on one thread, one handler at a time (as on a strand). Thread-safe.
  boost::asio::any_io_executor next();

  // Starts the I/O threads. They run until release(), then until their connections are gone.
  void start();
  // Runs the control context on the calling thread until it runs out of work, then release()s
  // and joins the I/O threads. Calls start() first if it was not called.
  void run();
  // Lets the I/O threads end once their contexts run out of work (after the last connection
  // ended). Thread-safe; later calls do nothing.
  void release();
  // Release(), then waits for the I/O threads. The control context is not run here.
  void join();

 private:
  struct io_thread {
    boost::asio::io_context ioc{1};
    std::unique_ptr<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guard;
    std::thread thread;
  };

  boost::asio::io_context control_{1};
  std::vector<std::unique_ptr<io_thread>> threads_;
  const std::chrono::microseconds spin_;
  std::atomic<std::size_t> next_{0};
  spin_group group_;
  std::atomic<bool> started_{false};
  std::atomic<bool> released_{false};
};

}  // namespace tandem::proxy
