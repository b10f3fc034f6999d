#include "server.h"

#include <httplib.h>
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <thread>

#include "api.h"
#include "cli.h"
#include "labdb_web_assets.h"

namespace labdb::serve {
namespace {

// The only paths besides /api/...: the page at / and the embedded files under /static/.
constexpr std::string_view kStaticPrefix = "/static/";
constexpr std::string_view kIndexName = "index.html";

// A path that names a parent folder, however spelled: refused before any route is looked at.
// httplib has already percent-decoded req.path (so /%2e%2e/ arrives as /../); req.target is the
// raw request line, checked too so that no decoding quirk can hide a "..".
bool has_parent_reference(const std::string& text) { return text.find("..") != std::string::npos; }

bool is_loopback(const std::string& host) {
    return host == "localhost" || host == "::1" || host == "[::1]" || host.rfind("127.", 0) == 0;
}

// The host part of a Host header ("127.0.0.1:8600" -> "127.0.0.1", "[::1]:8600" -> "[::1]").
std::string host_name_of(const std::string& header) {
    if (!header.empty() && header[0] == '[') return header.substr(0, header.find(']') + 1);
    return header.substr(0, header.find(':'));
}

const char* content_type_of(std::string_view name) {
    auto ends_with = [&](std::string_view suffix) {
        return name.size() >= suffix.size() && name.substr(name.size() - suffix.size()) == suffix;
    };
    if (ends_with(".html")) return "text/html; charset=utf-8";
    if (ends_with(".js")) return "text/javascript; charset=utf-8";
    if (ends_with(".css")) return "text/css; charset=utf-8";
    return "application/octet-stream";
}

const web::EmbeddedFile* embedded_file(std::string_view name) {
    for (const web::EmbeddedFile& file : web::kEmbeddedFiles) {
        if (file.name == name) return &file;
    }
    return nullptr;
}

void send_text(httplib::Response& response, int status, const std::string& text) {
    response.status = status;
    response.set_content(text + "\n", "text/plain; charset=utf-8");
}

// Everything the page shows is built with textContent and createElement (web/app.js); the
// policy is the second line of defence: no inline script, nothing loaded from elsewhere.
const httplib::Headers kSecurityHeaders = {
    {"Content-Security-Policy",
     "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
     "object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"},
    {"X-Content-Type-Options", "nosniff"},
    {"Referrer-Policy", "no-referrer"},
    {"Cache-Control", "no-store"},
};

}  // namespace

int serve(const ServeOptions& options) {
    const Api api(options.databases);

    // SIGINT and SIGTERM are blocked in every thread (httplib's workers inherit the mask) and
    // taken by sigtimedwait below, which stops the server from an ordinary thread: no work in a
    // signal handler.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    ::signal(SIGPIPE, SIG_IGN);

    httplib::Server server;
    server.set_default_headers(kSecurityHeaders);
    const bool loopback = is_loopback(options.host);
    server.set_pre_routing_handler([&](const httplib::Request& request, httplib::Response& response) {
        if (has_parent_reference(request.target) || has_parent_reference(request.path)) {
            send_text(response, 400, "bad request: the path may not contain '..'");
            return httplib::Server::HandlerResponse::Handled;
        }
        // On a loopback address only a page of this host may talk to the server: a web page whose
        // name is made to resolve to 127.0.0.1 (DNS rebinding) sends its own name as Host.
        if (loopback && request.has_header("Host")) {
            const std::string host = host_name_of(request.get_header_value("Host"));
            if (!is_loopback(host) && host != options.host) {
                send_text(response, 403, "forbidden: Host '" + host + "' is not this loopback server");
                return httplib::Server::HandlerResponse::Handled;
            }
        }
        return httplib::Server::HandlerResponse::Unhandled;
    });
    // One handler for every GET: the route table is ours (api.h, the page, the embedded files),
    // not a pattern that could match more than intended.
    server.Get(".*", [&](const httplib::Request& request, httplib::Response& response) {
        const std::string& path = request.path;
        if (path == "/" || path.rfind(kStaticPrefix, 0) == 0) {
            const std::string_view name = path == "/" ? kIndexName : std::string_view(path).substr(kStaticPrefix.size());
            if (const web::EmbeddedFile* file = embedded_file(name)) {
                response.set_content(std::string(file->content), content_type_of(file->name));
                return;
            }
        } else if (path.rfind("/api/", 0) == 0) {
            const Query query(request.params.begin(), request.params.end());
            if (std::optional<ApiReply> reply = api.get(path, query)) {
                response.status = reply->status;
                response.set_content(json_text(reply->body, -1), "application/json; charset=utf-8");
                return;
            }
            response.status = 404;
            response.set_content(json_text({{"error", "no API route " + path + "; the routes are:\n" +
                                                          Api::routes_help()}}, -1),
                                 "application/json; charset=utf-8");
            return;
        }
        send_text(response, 404, "not found: " + path);
    });

    int port = options.port;
    if (port == 0) {
        port = server.bind_to_any_port(options.host);
        if (port < 0) {
            throw lab::Error("labdb serve cannot listen on " + options.host + " (" + std::strerror(errno) +
                             "); hint: check --host, it must be an address of this machine");
        }
    } else if (!server.bind_to_port(options.host, port)) {
        throw lab::Error("labdb serve cannot listen on " + options.host + ":" + std::to_string(port) + " (" +
                         std::strerror(errno) + "); hint: another program may use the port: choose another --port, " +
                         "or --port 0 for any free one");
    }
    const std::string shown_host = options.host.find(':') != std::string::npos && options.host[0] != '['
                                       ? "[" + options.host + "]"
                                       : options.host;
    std::string files;
    for (const auto& file : api.databases()) files += (files.empty() ? "" : ", ") + file.string();
    if (!loopback) {
        std::cerr << "labdb serve: WARNING: listening on " << options.host
                  << ", not a loopback address: everyone who can reach this machine can read these results "
                     "(no authentication, no TLS); use --host 127.0.0.1 unless you mean it\n";
    }
    // The first line of stdout, flushed at once: scripts and tests read the port from it.
    std::cout << "labdb serve: http://" << shown_host << ":" << port << "/ (databases: " << files << ")" << std::endl;

    std::atomic<bool> listening_done = false;
    bool listened = false;
    std::thread listener([&] {
        listened = server.listen_after_bind();
        listening_done = true;
    });
    int stopped_by = 0;
    while (!listening_done) {
        const timespec poll_interval = {0, 200'000'000};
        const int signal_number = sigtimedwait(&stop_signals, nullptr, &poll_interval);
        if (signal_number > 0) {
            stopped_by = signal_number;
            server.stop();
            break;
        }
    }
    listener.join();
    if (stopped_by != 0) {
        std::cerr << "labdb serve: stopped (" << (stopped_by == SIGINT ? "SIGINT" : "SIGTERM") << ")\n";
        return kExitOk;
    }
    if (!listened) throw lab::Error("labdb serve stopped: the listening socket failed; hint: start it again");
    return kExitOk;
}

}  // namespace labdb::serve
