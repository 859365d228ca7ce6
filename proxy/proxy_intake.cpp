#include "proxy_intake.h"

#include <algorithm>

#include "proxy_header.h"

namespace ftpw {

void ProxyIntake::start(uv_loop_t* loop, Stream* s, const NetAddr& peer, unsigned accept, Done done, Failed failed) {
  auto* in = new ProxyIntake;
  in->stream_ = s;
  in->peer_ = peer;
  in->reader_ = ProxyHeaderReader(accept);
  in->done_ = std::move(done);
  in->failed_ = std::move(failed);
  uv_timer_init(loop, &in->timer_);
  in->timer_.data = in;
  uv_timer_start(&in->timer_, [](uv_timer_t* t) {
    auto* self = static_cast<ProxyIntake*>(t->data);
    self->fail(*self->stream_, "no PROXY header in time");
  }, kTimeoutMs, 0);
  s->set_handler(in);
  s->start();
}

void ProxyIntake::on_data(Stream& s, const char* p, std::size_t n) {
  if (over_) return;
  const auto status = reader_.feed(std::string_view(p, n));  // at most one read (64 KiB) past the bound
  if (status == ProxyHeader::Status::bad) return fail(s, reader_.error());
  if (status == ProxyHeader::Status::incomplete) return;
  over_ = true;
  const ProxyHeader& h = reader_.header();
  const bool named = h.source.has_value();
  const NetAddr client = named ? *h.source : peer_;
  std::string early = reader_.take_rest();
  Done done = std::move(done_);
  finish_timer();  // frees this: nothing of it is used below
  done(&s, client, named ? std::optional<NetAddr>(peer_) : std::nullopt, std::move(early));
}

void ProxyIntake::fail(Stream& s, std::string_view why) {
  if (over_) return;
  over_ = true;
  uv_timer_stop(&timer_);
  failed_(peer_, why);
  s.close();  // unread, unanswered; on_closed frees this
}

void ProxyIntake::on_closed(Stream&) { finish_timer(); }

void ProxyIntake::finish_timer() {
  uv_timer_stop(&timer_);
  uv_close(reinterpret_cast<uv_handle_t*>(&timer_), [](uv_handle_t* h) { delete static_cast<ProxyIntake*>(h->data); });
}

}  // namespace ftpw
