// The router decides which store serves a request. In the single-store modes (sqlite-only,
// d1-only) every request goes to that store; the dual modes (one leader, one follower, read
// percentages) extend this class.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "backends/store.hpp"

namespace tandem::proxy {

// What the router knows about the client a request came from.
struct client_context {
  std::string routing_key;  // from hello; stable per user, for sticky read routing
};

class router {
 public:
  explicit router(std::unique_ptr<backends::store> primary);
  ~router();

  // Thread-safe. `done` is called exactly once, on a store thread.
  void execute(const client_context& client, protocol::statement st, backends::exec_options options,
               backends::query_done done);
  void execute_batch(const client_context& client, std::vector<protocol::statement> statements,
                     backends::exec_options options, backends::batch_done done);

  // Finishes accepted work and stops the stores. Idempotent.
  void shutdown();

  backends::store& leader() { return *primary_; }

 private:
  std::unique_ptr<backends::store> primary_;
};

}  // namespace tandem::proxy
