#include "io/http_client.h"

#include "persona/errors.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <regex>

namespace persona::http {

using Json = nlohmann::json;

SplitUrl split_base_url(const std::string& base_url) {
    static const std::regex pattern(R"(^(https?://[^/?#]+)(/[^?#]*)?$)", std::regex::icase);
    std::smatch match;
    if (!std::regex_match(base_url, match, pattern))
        throw Error("'" + base_url + "' is not an endpoint URL: expected http(s)://host[:port][/path], "
                    "e.g. http://localhost:8080/v1");
    SplitUrl split{match[1].str(), match[2].str()};
    while (!split.path_prefix.empty() && split.path_prefix.back() == '/') split.path_prefix.pop_back();
    return split;
}

std::string server_message(const std::string& body) {
    try {
        const Json reply = Json::parse(body);
        if (reply.is_object()) {
            if (reply.contains("error")) {
                const Json& error = reply.at("error");
                if (error.is_string()) return error.get<std::string>();
                if (error.is_object() && error.contains("message") && error.at("message").is_string())
                    return error.at("message").get<std::string>();
            }
            if (reply.contains("message") && reply.at("message").is_string()) return reply.at("message").get<std::string>();
            if (reply.contains("detail") && reply.at("detail").is_string()) return reply.at("detail").get<std::string>();
        }
    } catch (const Json::exception&) {
    }
    std::string text = body.substr(0, 300);
    text.erase(std::remove(text.begin(), text.end(), '\n'), text.end());
    return text.empty() ? "(empty body)" : text + (body.size() > 300 ? "..." : "");
}

std::string transport_problem(httplib::Error error) {
    switch (error) {
    case httplib::Error::Connection: return "could not connect (connection refused or host unreachable: is the server running?)";
    case httplib::Error::ConnectionTimeout: return "timed out connecting";
    case httplib::Error::Read: return "no complete reply (the connection broke, or the reply took longer than the timeout)";
    case httplib::Error::Write: return "the connection broke while sending the request";
    case httplib::Error::SSLConnection: return "the TLS handshake failed";
    case httplib::Error::SSLLoadingCerts: return "could not load the system's CA certificates";
    case httplib::Error::SSLServerVerification: return "the server's TLS certificate could not be verified";
    default: return httplib::to_string(error);
    }
}

}  // namespace persona::http
