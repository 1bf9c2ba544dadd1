#include "proxy/key_positions.hpp"

namespace tandem::proxy {

key_positions::key_positions(std::size_t max_keys, std::chrono::milliseconds ttl) : max_keys_(max_keys), ttl_(ttl) {}

void key_positions::expire_locked(clock::time_point now) {
  while (!order_.empty() && order_.back().expires <= now) {
    index_.erase(order_.back().key);
    order_.pop_back();
  }
}

key_positions::entry& key_positions::touch_locked(std::string_view key, clock::time_point now) {
  expire_locked(now);
  if (auto it = index_.find(key); it != index_.end()) {
    // Moving the node keeps its key's storage, so the index's view stays valid.
    order_.splice(order_.begin(), order_, it->second);
    it->second->expires = now + ttl_;
    return *it->second;
  }
  if (order_.size() >= max_keys_) {
    index_.erase(order_.back().key);
    order_.pop_back();
  }
  order_.push_front(entry{std::string(key), {}, {}, now + ttl_});
  index_.emplace(order_.front().key, order_.begin());
  return order_.front();
}

std::size_t key_positions::note(std::string_view key, const protocol::position& p, clock::time_point now) {
  if (max_keys_ == 0 || ttl_.count() <= 0 || p.empty()) return 0;
  std::lock_guard lock(mu_);
  protocol::keep_newer(touch_locked(key, now).at, p);
  return order_.size();
}

std::size_t key_positions::note_bookmark(std::string_view key, const std::string& bookmark, clock::time_point now) {
  if (max_keys_ == 0 || ttl_.count() <= 0 || bookmark.empty()) return 0;
  std::lock_guard lock(mu_);
  auto& e = touch_locked(key, now);
  if (bookmark > e.bookmark) e.bookmark = bookmark;
  return order_.size();
}

std::string key_positions::bookmark(std::string_view key, clock::time_point now) {
  std::lock_guard lock(mu_);
  expire_locked(now);
  auto it = index_.find(key);
  return it == index_.end() ? std::string() : it->second->bookmark;
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
