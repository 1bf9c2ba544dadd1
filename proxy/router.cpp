#include "proxy/router.hpp"

namespace tandem::proxy {

router::router(std::unique_ptr<backends::store> sqlite) : sqlite_(std::move(sqlite)) {}

router::~router() { shutdown(); }

void router::execute(const client_context&, protocol::statement st, backends::exec_options options,
                     backends::query_done done) {
  sqlite_->execute(std::move(st), options, std::move(done));
}

void router::execute_batch(const client_context&, std::vector<protocol::statement> statements,
                           backends::exec_options options, backends::batch_done done) {
  sqlite_->execute_batch(std::move(statements), options, std::move(done));
}

void router::shutdown() {
  if (sqlite_) sqlite_->shutdown();
}

}  // namespace tandem::proxy
