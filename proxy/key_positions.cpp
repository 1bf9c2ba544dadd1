#include "proxy/key_positions.hpp"

namespace tandem::proxy {

key_positions::key_positions(std::size_t max_keys, std::chrono::milliseconds ttl) : max_keys_(max_keys), ttl_(ttl) {}

void key_positions::expire_locked(clock::time_point now) {
  while (!order_.empty() && order_.back().expires <= now) {
    index_.erase(order_.back().key);
    order_.pop_back();
  }
}

std::size_t key_positions::note(std::string_view key, const protocol::position& p, clock::time_point now) {
  if (max_keys_ == 0 || ttl_.count() <= 0 || p.empty()) return 0;
  std::lock_guard lock(mu_);
  expire_locked(now);
  if (auto it = index_.find(key); it != index_.end()) {
    // Moving the node keeps its key's storage, so the index's view stays valid.
    order_.splice(order_.begin(), order_, it->second);
    protocol::keep_newer(it->second->at, p);
    it->second->expires = now + ttl_;
    return order_.size();
  }
  if (order_.size() >= max_keys_) {
    index_.erase(order_.back().key);
    order_.pop_back();
  }
  order_.push_front(entry{std::string(key), p, now + ttl_});
  index_.emplace(order_.front().key, order_.begin());
  return order_.size();
}

protocol::position key_positions::get(std::string_view key, clock::time_point now) {
  std::lock_guard lock(mu_);
  expire_locked(now);
  auto it = index_.find(key);
  return it == index_.end() ? protocol::position{} : it->second->at;
}

std::size_t key_positions::size() const {
  std::lock_guard lock(mu_);
  return order_.size();
}

}  // namespace tandem::proxy
