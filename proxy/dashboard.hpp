// The live dashboard page (proxy/dashboard.html, embedded at build time), served at GET /.
#pragma once

#include <string_view>

namespace tandem::proxy {

std::string_view dashboard_html() noexcept;

}  // namespace tandem::proxy
