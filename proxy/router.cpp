#include "proxy/router.hpp"

namespace tandem::proxy {

router::router(std::unique_ptr<backends::store> primary) : primary_(std::move(primary)) {}

router::~router() { shutdown(); }

void router::execute(const client_context&, protocol::statement st, backends::exec_options options,
                     backends::query_done done) {
  primary_->execute(std::move(st), options, std::move(done));
}

void router::execute_batch(const client_context&, std::vector<protocol::statement> statements,
                           backends::exec_options options, backends::batch_done done) {
  primary_->execute_batch(std::move(statements), options, std::move(done));
}

void router::shutdown() {
  if (primary_) primary_->shutdown();
}

}  // namespace tandem::proxy
