#include "transfer.h"

namespace ftpw {

void Transfer::start(Verb verb, std::string_view path, bool reused, bool download, std::uint64_t now_us) {
  active_ = true;
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
  cut_ = f.cut;
}

TransferRecord Transfer::finish(std::uint64_t now_us) {
  if (cut_short()) code_ = 426;
  TransferRecord r{verb_, path_, download_ ? down_ : up_, download_, now_us - start_us_, reused_, code_};
  active_ = false;
  data_reset();  // used up: the next transfer needs a data connection of its own
  return r;
}

}  // namespace ftpw
