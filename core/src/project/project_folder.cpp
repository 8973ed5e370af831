// A project as a folder: project.json and its vector files read only from inside the folder, and
// saved atomically (everything staged beside the folder, then renamed into place).
#include "persona/project.h"

#include "io/atomic_file.h"
#include "io/json_file.h"
#include "persona/errors.h"
#include "persona/files.h"
#include "persona/vector_files.h"
#include "project/project_internal.h"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <memory>
#include <unistd.h>

namespace persona {

namespace fs = std::filesystem;

namespace detail {
std::function<void(const std::string& stage)> project_save_fault_hook;
}

namespace {

using Json = nlohmann::json;
using detail::check_vector_key;
using detail::kAppVersion;
using detail::VectorEntry;

// project.json holds diagnostics and prompts, never tensors: a bigger file is the wrong file.
constexpr std::uint64_t kMaxProjectFileBytes = 50'000'000;

[[noreturn]] void fail(const std::string& source, const std::string& problem) { throw FileError(source, problem); }

// Refuses a file of the project that resolves outside the project folder: the key check above
// looks at text only, and a shared project may hold a link to /etc/passwd.
void file_inside(const fs::path& folder, const fs::path& file) {
    std::error_code error;
    const fs::path real_folder = fs::canonical(folder, error);
    if (error) fail(folder.string(), "cannot resolve the project folder: " + error.message());
    const fs::path real_file = fs::canonical(file, error);
    if (error) fail(file.string(), "cannot resolve: " + error.message());
    const auto [folder_end, file_at] = std::mismatch(real_folder.begin(), real_folder.end(), real_file.begin(), real_file.end());
    if (folder_end != real_folder.end() || file_at == real_file.end())
        fail(file.string(), "is a link to a file outside the project folder; a project reads only its own files");
    check_regular_file(real_file.string());
}

std::string ensure_trailing_newline(std::string text) {
    text += '\n';
    return text;
}

void run_fault_hook(const std::string& stage) {
    if (detail::project_save_fault_hook) detail::project_save_fault_hook(stage);
}

// Hidden, named after the project, so a leftover from a killed save explains itself.
fs::path sibling_path(const fs::path& folder, const std::string& tag) {
    static std::atomic<int> counter{0};
    return folder.parent_path() /
           ("." + folder.filename().string() + "." + tag + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
}

// Staging folders of saves whose process is gone (killed mid-save) are left beside the project;
// the next save of that project removes them. A live process's staging folder is its own.
void remove_abandoned_stages(const fs::path& folder) {
    const std::string prefix = "." + folder.filename().string() + ".saving-";
    std::error_code error;
    for (const fs::directory_entry& entry : fs::directory_iterator(folder.parent_path(), error)) {
        const std::string name = entry.path().filename().string();
        if (name.compare(0, prefix.size(), prefix) != 0) continue;
        const std::string rest = name.substr(prefix.size());
        const std::size_t dash = rest.find('-');
        if (dash == 0 || dash == std::string::npos || rest.find_first_not_of("0123456789-") != std::string::npos) continue;
        const long pid = std::strtol(rest.substr(0, dash).c_str(), nullptr, 10);
        if (pid <= 0 || pid == ::getpid() || ::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM) continue;
        std::error_code ignored;
        fs::remove_all(entry.path(), ignored);
    }
}

void sync_path(const fs::path& path, bool directory) {
    const int fd = ::open(path.c_str(), (directory ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
    if (fd < 0) return;
    ::fsync(fd);
    ::close(fd);
}

bool managed_entry(const fs::path& relative) {
    const std::string text = relative.generic_string();
    return text == kProjectFileName || text == kProjectVectorFolder;
}

// Files the user keeps in the folder (notes, a README) travel into the new version. Vectors
// that project.json no longer lists are dropped: the project owns vectors/.
void copy_foreign_files(const fs::path& from, const fs::path& to) {
    for (const auto& entry : fs::directory_iterator(from)) {
        const fs::path name = entry.path().filename();
        if (managed_entry(name)) continue;
        if (name.string().rfind(".project.json.tmp-", 0) == 0) continue;  // a killed writer's leftover
        fs::copy(entry.path(), to / name, fs::copy_options::recursive | fs::copy_options::copy_symlinks);
    }
}

// FOLDER/SUBFOLDER/*.json in name (so time) order: results a project keeps without listing them.
// What is not a regular file there is not followed (a project shared by a stranger must not read
// outside its folder) and, like a file that does not read, is named in `skipped`.
template <typename Result>
std::vector<std::pair<std::string, Result>> read_result_folder(const fs::path& folder, const char* subfolder,
                                                               Result (*read)(const std::string&),
                                                               std::vector<std::string>& skipped) {
    const fs::path results = folder / subfolder;
    std::error_code error;
    if (fs::symlink_status(results, error).type() != fs::file_type::directory) return {};
    std::vector<std::string> names;
    for (const auto& entry : fs::directory_iterator(results, error))
        if (entry.path().extension() == ".json") names.push_back(entry.path().filename().string());
    // By stem: "x-...Z.json" before its same-second sibling "x-...Z-2.json" ('-' sorts before '.').
    std::sort(names.begin(), names.end(), [](const std::string& a, const std::string& b) {
        return fs::path(a).stem().string() < fs::path(b).stem().string();
    });
    std::vector<std::pair<std::string, Result>> kept;
    for (const std::string& name : names) {
        const fs::path path = results / name;
        if (fs::symlink_status(path, error).type() != fs::file_type::regular) {
            skipped.push_back(path.string() + ": not a regular file, not read");
            continue;
        }
        try {
            kept.emplace_back(std::string(subfolder) + "/" + name, read(path.string()));
        } catch (const Error& e) {
            skipped.push_back(e.what());
        }
    }
    return kept;
}

}  // namespace

std::string project_folder(const std::string& path) {
    fs::path p(path);
    if (p.filename() == kProjectFileName) return p.parent_path().empty() ? "." : p.parent_path().string();
    // "evil.persona/" names the same folder as "evil.persona".
    if (p.filename().empty() && p.has_parent_path()) p = p.parent_path();
    return p.string();
}

Project read_project(const std::string& path) {
    const fs::path folder(project_folder(path));
    const std::string json_path = (folder / kProjectFileName).string();
    std::error_code error;
    if (!fs::exists(folder, error)) {
        std::string hint;
        const fs::path previous = folder.parent_path() / ("." + folder.filename().string() + ".previous");
        if (fs::exists(previous, error))
            hint = "; a save was interrupted: the previous version is " + previous.string();
        fail(folder.string(), "no such project folder" + hint);
    }
    if (!fs::is_directory(folder, error))
        fail(folder.string(), "not a project folder (a project is a folder NAME.persona holding project.json)");
    if (!fs::exists(json_path, error)) fail(json_path, "missing: this folder holds no project.json, so it is not a project");

    file_inside(folder, json_path);
    const Json json = migrate_project_json(detail::read_json_file(json_path, kMaxProjectFileBytes), json_path);
    std::vector<VectorEntry> entries;
    Project project = detail::project_and_vector_entries(json, json_path, &entries);
    for (const VectorEntry& entry : entries) {
        const fs::path file = folder / entry.file;
        if (!fs::exists(file, error))
            fail(file.string(), "missing: project.json lists this vector file, but the project folder does not hold it");
        file_inside(folder, file);
        PersonaVector vector = read_vector_file(file.string());
        if (vector.layer_count != entry.layers || vector.hidden_size != entry.hidden_size)
            fail(file.string(), "vector shape [" + std::to_string(vector.layer_count) + ", " +
                                    std::to_string(vector.hidden_size) + "] differs from the [" +
                                    std::to_string(entry.layers) + ", " + std::to_string(entry.hidden_size) +
                                    "] that project.json records");
        project.vectors[entry.file] = std::move(vector);
    }
    // A result file that does not read is left where it is (a save carries it along as a foreign
    // file); the others are the project's.
    project.monitoring = read_result_folder(folder, kProjectMonitoringFolder, read_monitoring_study, project.skipped_files);
    project.sweeps = read_result_folder(folder, kProjectSweepFolder, read_sweep_result, project.skipped_files);
    return project;
}

void write_project(const std::string& path, Project& project) {
    const fs::path folder = fs::absolute(project_folder(path)).lexically_normal();
    const std::string target = folder.string();
    for (const auto& [key, vector] : project.vectors) {
        check_vector_key(key, "vector \"" + key + "\"", target);
        try {
            vector.check_shape();
        } catch (const Error& e) {
            fail(target, std::string("cannot save ") + key + ": " + e.what());
        }
    }

    for (const auto& [key, study] : project.monitoring)
        detail::check_file_key(key, kProjectMonitoringFolder, ".json", "a monitoring study", "study \"" + key + "\"", target);
    for (const auto& [key, sweep] : project.sweeps)
        detail::check_file_key(key, kProjectSweepFolder, ".json", "a sweep", "sweep \"" + key + "\"", target);

    Project saved = project;
    const std::string now = utc_timestamp();
    if (saved.created.empty()) saved.created = now;
    saved.modified = now;
    saved.app_version = kAppVersion;
    std::string text;
    try {
        text = ensure_trailing_newline(to_json(saved).dump(2));
    } catch (const nlohmann::json::type_error& e) {
        fail(target, "cannot save: the project holds text that is not valid UTF-8 (" + detail::json_error_text(e) + ")");
    }

    std::error_code error;
    const bool replacing = fs::exists(folder, error);
    if (replacing && !fs::is_directory(folder, error)) fail(target, "exists and is not a folder; choose another name");
    if (!fs::is_directory(folder.parent_path(), error))
        fail(target, "cannot save: the folder " + folder.parent_path().string() + " does not exist");

    remove_abandoned_stages(folder);
    // Everything goes into a staging folder first: until the final rename the old project is
    // untouched, whatever fails.
    const fs::path stage = sibling_path(folder, "saving");
    struct StageCleanup {
        fs::path path;
        ~StageCleanup() {
            std::error_code ignored;
            if (!path.empty()) fs::remove_all(path, ignored);
        }
    } cleanup{stage};
    try {
        fs::create_directory(stage);
        if (replacing) copy_foreign_files(folder, stage);
        run_fault_hook("foreign files");
        if (!saved.vectors.empty()) fs::create_directory(stage / kProjectVectorFolder);
        for (const auto& [key, vector] : saved.vectors) {
            write_vector_file((stage / key).string(), vector);
            run_fault_hook("vector " + key);
        }
        if (!saved.monitoring.empty()) fs::create_directories(stage / kProjectMonitoringFolder);
        for (const auto& [key, study] : saved.monitoring) {
            write_monitoring_study((stage / key).string(), study);
            write_monitoring_study_csv((stage / key).replace_extension(".csv").string(), study);
        }
        if (!saved.sweeps.empty()) fs::create_directories(stage / kProjectSweepFolder);
        for (const auto& [key, sweep] : saved.sweeps) write_sweep_result((stage / key).string(), sweep, saved.find_trait(sweep.trait));
        detail::write_file_atomically((stage / kProjectFileName).string(), text);
        run_fault_hook("project.json");
        sync_path(stage / kProjectVectorFolder, true);
        sync_path(stage, true);
    } catch (const FileError& e) {
        fail(target, "cannot save (the project on disk is unchanged): " + e.problem());
    } catch (const fs::filesystem_error& e) {
        fail(target, std::string("cannot save (the project on disk is unchanged): ") + e.code().message() + " (" +
                         e.path1().string() + ")");
    }
    run_fault_hook("before replacing");

    if (!replacing) {
        if (std::rename(stage.c_str(), folder.c_str()) != 0)
            fail(target, std::string("cannot save: cannot rename the staged project into place: ") + std::strerror(errno));
        cleanup.path.clear();
    } else if (::renameat2(AT_FDCWD, stage.c_str(), AT_FDCWD, folder.c_str(), RENAME_EXCHANGE) == 0) {
        // The old version now sits at the staging name, which the cleanup removes.
    } else if (errno == EINVAL || errno == ENOSYS || errno == ENOTSUP) {
        // No atomic exchange here: keep the old version beside the new until the new is in place.
        const fs::path previous = folder.parent_path() / ("." + folder.filename().string() + ".previous");
        fs::remove_all(previous, error);
        if (std::rename(folder.c_str(), previous.c_str()) != 0)
            fail(target, std::string("cannot save (the project on disk is unchanged): ") + std::strerror(errno));
        if (std::rename(stage.c_str(), folder.c_str()) != 0) {
            const int rename_error = errno;
            std::rename(previous.c_str(), folder.c_str());
            fail(target, std::string("cannot save (the project on disk is unchanged): ") + std::strerror(rename_error));
        }
        cleanup.path = previous;
    } else {
        fail(target, std::string("cannot save (the project on disk is unchanged): cannot replace the folder: ") +
                         std::strerror(errno));
    }
    sync_path(folder.parent_path(), true);
    project.created = saved.created;
    project.modified = saved.modified;
    project.app_version = saved.app_version;
}

}  // namespace persona
