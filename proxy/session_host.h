// What a session needs from the worker that runs it, and what it tells it.
// Sessions see their worker only through this, so the two do not include
// each other.
#pragma once
#include <uv.h>

#include <cstdint>
#include <string>

#include "audit_log.h"
#include "net.h"
#include "port_pool.h"
#include "stats.h"

namespace ftpw {

class Session;

class SessionHost {
 public:
  virtual ~SessionHost() = default;
  virtual uv_loop_t* loop() = 0;
  virtual AuditLog& audit() = 0;
  virtual PortPool& ports() = 0;
  virtual WorkerStats& stats() = 0;
  virtual std::string next_session_id() = 0;
  // A failed login from `ip`; true when the address is now in its cool-down.
  virtual bool login_failed(const NetAddr& ip) = 0;
  // A login as `user`: false when that user has all the sessions allowed.
  virtual bool user_login(const std::string& user) = 0;
  virtual void user_logout(const std::string& user) = 0;
  // Upstream connections still waiting for the server's first reply are
  // limited (upstream.max_connecting): a session asks for a slot, connects
  // when it gets one (Session::connect_upstream) and gives it back once the
  // server speaks or the session is gone.
  virtual void want_upstream(Session* s) = 0;
  virtual void release_upstream(Session* s, bool held) = 0;
  // How the session's upstream connect went (the readiness probe reports
  // the last one).
  virtual void upstream_outcome(bool ok) { (void)ok; }
  // Every handle of the session is closed: it is deleted after this.
  virtual void session_gone(Session* s) = 0;
};

}  // namespace ftpw
