// Awaiting a callback-style call (a store, the replicator) from a coroutine.
#pragma once

#include <memory>

#include <boost/asio/async_result.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace tandem::proxy {

// `start(callback)` hands the callback to something that calls it once, on its own thread, with
// an R; the R is posted back to this coroutine's executor.
template <class R, class Start>
boost::asio::awaitable<R> await_callback(Start start) {
  namespace asio = boost::asio;
  auto ex = co_await asio::this_coro::executor;
  // Named, not a temporary inside the co_await expression: GCC 12 destroys lambda temporaries
  // with non-trivial captures twice there (GCC PR 101367).
  auto initiation = [ex, start](auto handler) mutable {
    auto h = std::make_shared<decltype(handler)>(std::move(handler));
    start([ex, h](R r) mutable { asio::post(ex, [h, r = std::move(r)]() mutable { (*h)(std::move(r)); }); });
  };
  co_return co_await asio::async_initiate<const asio::use_awaitable_t<>&, void(R)>(std::move(initiation),
                                                                                  asio::use_awaitable);
}

}  // namespace tandem::proxy
