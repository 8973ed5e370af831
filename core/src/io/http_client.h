#pragma once
// What core's HTTP clients share (the chat endpoint of judges and drafting, the served model of
// a remote workbench): URL splitting and the words for what went wrong.
#include <httplib.h>

#include <string>

namespace persona::http {

struct SplitUrl {
    std::string scheme_host_port;  // what httplib::Client takes
    std::string path_prefix;       // "/v1", no trailing slash
};

// http(s)://host[:port][/path]; throws Error with an example otherwise.
SplitUrl split_base_url(const std::string& base_url);

// The server's own words about a failed request: OpenAI's {"error": {"message": ...}}, the
// {"error": "..."} or {"message": ...} of other servers, else the start of the body.
std::string server_message(const std::string& body);

// A transport error in words a user can act on.
std::string transport_problem(httplib::Error error);

}  // namespace persona::http
