#include "transfer.h"

namespace ftpw {

void Transfer::start(Verb verb, std::string_view path, bool reused, bool download, std::uint64_t now_us,
                     bool protected_data) {
  active_ = true;
  protected_ = protected_data;
  verb_ = verb;
  path_.assign(path);
  reused_ = reused;
  download_ = download;
  code_ = 0;
  start_us_ = now_us;
}

void Transfer::data_closed(const DataFact& f) {
  down_ = f.down;
  up_ = f.up;
  // A connection the proxy closes because the server already gave the
  // transfer up (its 4xx/5xx came first) was cut by the server's doing.
  cut_ = f.cut && code_ < 300;
}

TransferRecord Transfer::finish(std::uint64_t now_us) {
  if (cut_short()) code_ = 426;
  TransferRecord r{verb_, path_, download_ ? down_ : up_, download_, now_us - start_us_, reused_, code_, protected_};
  active_ = false;
  code_ = 0;
  data_reset();  // used up: the next transfer needs a data connection of its own
  return r;
}

}  // namespace ftpw
