"""A stand-in for the Hugging Face Hub on 127.0.0.1, so pushes are tested with no network.

It implements only the HTTP endpoints the real huggingface_hub client calls for create_repo,
create_branch, create_commit (README validation, preupload, the LFS batch API with a basic PUT
upload, the NDJSON commit with inline base64 for regular files), list_repo_tree, repo_info and
hf_hub_download/snapshot_download (HEAD and GET on /resolve, with the ETag, X-Repo-Commit,
Content-Length and, for LFS files, X-Linked-Etag/X-Linked-Size headers that client checks).

It speaks plain LFS, not Xet: run the client with HF_HUB_DISABLE_XET=1, because huggingface_hub 2.x
uploads through Xet whenever hf_xet is installed, without asking the server first. Point the
client at it with HF_ENDPOINT=<url>; huggingface_hub reads that at import time, so it has to be set
in the environment of the process that pushes.

Every request is recorded with its Authorization header, so a test can check the token that was
sent, and that nothing was sent at all.
"""
from __future__ import annotations

import base64
import hashlib
import json
import socket
import threading
import time
from dataclasses import dataclass, field

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse

# Which files the Hub stores through LFS: its default .gitattributes patterns, anything large, and
# anything binary (a NUL byte in the first 512 bytes, the sample preupload sends).
LFS_SUFFIXES = (".safetensors", ".gguf", ".bin", ".pt", ".pth", ".onnx", ".h5", ".msgpack")
LFS_MIN_BYTES = 10 * 1024 * 1024
GITATTRIBUTES = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n" \
                b"*.gguf filter=lfs diff=lfs merge=lfs -text\n" \
                b"*.bin filter=lfs diff=lfs merge=lfs -text\n"


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n"
            .encode())


@dataclass(frozen=True)
class Blob:
    data: bytes
    lfs: bool

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def oid(self) -> str:
        """The git object id: of the content, or of the LFS pointer for an LFS file."""
        if self.lfs:
            return git_blob_oid(lfs_pointer(self.sha256, len(self.data)))
        return git_blob_oid(self.data)

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.oid


@dataclass
class Repo:
    private: bool
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, dict[str, Blob]] = field(default_factory=dict)

    def resolve(self, revision: str) -> str | None:
        if revision in self.branches:
            return self.branches[revision]
        return revision if revision in self.commits else None


@dataclass
class Seen:
    method: str
    path: str
    authorization: str | None


class HubStandIn:
    """The fake Hub: `start()`, point HF_ENDPOINT at `url`, inspect `requests` and `files()`."""

    def __init__(self, token: str):
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.lfs: dict[str, bytes] = {}
        self.requests: list[Seen] = []
        # path -> bytes it is stored as instead (None: dropped), for commits from now on: a Hub
        # that loses or mangles a file, which verification must catch.
        self.tamper: dict[str, bytes | None] = {}
        self._lock = threading.Lock()
        self._counter = 0
        self.app = self._build_app()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # --- for tests ------------------------------------------------------------------------------
    def start(self) -> "HubStandIn":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))  # a free port, chosen by the kernel
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(self.app, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the Hub stand-in did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        repo = self.repos[repo_id]
        return {path: blob.data for path, blob in repo.commits[repo.resolve(revision)].items()}

    def blobs(self, repo_id: str, revision: str = "main") -> dict[str, Blob]:
        repo = self.repos[repo_id]
        return dict(repo.commits[repo.resolve(revision)])

    def seed(self, repo_id: str, files: dict[str, bytes], private: bool = True) -> None:
        """A repository that already holds `files` on main, as an earlier push left it."""
        repo = self._create(repo_id, private)
        tree = dict(repo.commits[repo.branches["main"]])
        tree.update({p: Blob(d, _is_lfs(p, len(d), d[:512])) for p, d in files.items()})
        for path, blob in tree.items():
            if blob.lfs:
                self.lfs[blob.sha256] = blob.data
        self._new_commit(repo, "main", tree, "seed")

    # --- storage --------------------------------------------------------------------------------
    def _create(self, repo_id: str, private: bool) -> Repo:
        repo = Repo(private=private)
        self.repos[repo_id] = repo
        # The Hub writes .gitattributes itself when it creates a repository.
        self._new_commit(repo, "main", {".gitattributes": Blob(GITATTRIBUTES, False)},
                         "initial commit")
        return repo

    def _new_commit(self, repo: Repo, branch: str, tree: dict[str, Blob], summary: str) -> str:
        with self._lock:
            self._counter += 1
            oid = hashlib.sha1(f"{self._counter}:{branch}:{summary}".encode()).hexdigest()
        repo.commits[oid] = tree
        repo.branches[branch] = oid
        return oid

    # --- HTTP -----------------------------------------------------------------------------------
    def _build_app(self) -> FastAPI:
        app = FastAPI()

        @app.middleware("http")
        async def record(request: Request, call_next):
            with self._lock:
                self.requests.append(Seen(request.method, request.url.path,
                                          request.headers.get("authorization")))
            return await call_next(request)

        app.post("/api/repos/create")(self.create_repo)
        app.post("/api/validate-yaml")(self.validate_yaml)
        app.post("/api/models/{owner}/{name}/branch/{branch}")(self.create_branch)
        app.post("/api/models/{owner}/{name}/preupload/{revision}")(self.preupload)
        app.post("/api/models/{owner}/{name}/commit/{revision}")(self.commit)
        app.get("/api/models/{owner}/{name}/tree/{revision}")(self.tree)
        app.get("/api/models/{owner}/{name}/tree/{revision}/{path:path}")(self.tree)
        app.get("/api/models/{owner}/{name}")(self.model_info)
        app.get("/api/models/{owner}/{name}/revision/{revision}")(self.model_info)
        app.post("/{owner}/{name_git}/info/lfs/objects/batch")(self.lfs_batch)
        app.put("/_standin_lfs/{oid}")(self.lfs_put)
        app.api_route("/{owner}/{name}/resolve/{revision}/{path:path}",
                      methods=["GET", "HEAD"])(self.resolve)
        return app

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.token}"

    def _repo(self, request: Request, repo_id: str, write: bool = False):
        """The repository, or the error response the Hub would give."""
        repo = self.repos.get(repo_id)
        if write and not self._authorized(request):
            return None, _error(401, None, "Invalid username or password.")
        # A private repository is indistinguishable from a missing one without the token.
        if repo is None or (repo.private and not self._authorized(request)):
            return None, _error(404, "RepoNotFound", "Repository not found")
        return repo, None

    def _revision(self, repo: Repo, revision: str):
        commit = repo.resolve(revision)
        if commit is None:
            return None, _error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return commit, None

    async def create_repo(self, request: Request):
        if not self._authorized(request):
            return _error(401, None, "Invalid username or password.")
        body = await request.json()
        repo_id = f"{body.get('organization')}/{body['name']}"
        url = f"{_base(request)}/{repo_id}"
        if body.get("type") not in (None, "model"):
            return _error(400, None, "the stand-in only hosts model repositories")
        if repo_id in self.repos:
            return JSONResponse({"error": "You already created this model repo", "url": url},
                                status_code=409)
        self._create(repo_id, body.get("visibility", "public") == "private")
        return {"url": url, "name": repo_id, "id": hashlib.sha1(repo_id.encode()).hexdigest()}

    async def validate_yaml(self, request: Request):
        return {"errors": [], "warnings": []}

    async def create_branch(self, request: Request, owner: str, name: str, branch: str):
        repo, error = self._repo(request, f"{owner}/{name}", write=True)
        if error:
            return error
        if branch in repo.branches:
            return _error(409, None, "Reference already exists")
        start = (await request.json()).get("startingPoint") or "main"
        commit, error = self._revision(repo, start)
        if error:
            return error
        repo.branches[branch] = commit
        return {"name": branch}

    async def preupload(self, request: Request, owner: str, name: str, revision: str):
        repo, error = self._repo(request, f"{owner}/{name}", write=True)
        if error:
            return error
        commit, error = self._revision(repo, revision)
        if error:
            return error
        tree = repo.commits[commit]
        files = []
        for entry in (await request.json())["files"]:
            sample = base64.b64decode(entry["sample"])
            lfs = _is_lfs(entry["path"], entry["size"], sample)
            existing = tree.get(entry["path"])
            remote = None if existing is None else (existing.sha256 if existing.lfs
                                                    else existing.oid)
            files.append({"path": entry["path"], "uploadMode": "lfs" if lfs else "regular",
                          "shouldIgnore": False, "oid": remote})
        return {"files": files, "commitOid": commit}

    async def lfs_batch(self, request: Request, owner: str, name_git: str):
        if not name_git.endswith(".git"):
            return _error(404, "RepoNotFound", "Repository not found")
        _, error = self._repo(request, f"{owner}/{name_git.removesuffix('.git')}", write=True)
        if error:
            return error
        body = await request.json()
        objects = []
        for obj in body["objects"]:
            entry = {"oid": obj["oid"], "size": obj["size"]}
            if obj["oid"] not in self.lfs:  # content already stored needs no upload
                entry["actions"] = {"upload": {"href": f"{_base(request)}/_standin_lfs/"
                                                       f"{obj['oid']}", "header": {}}}
            objects.append(entry)
        return JSONResponse({"transfer": "basic", "objects": objects},
                            media_type="application/vnd.git-lfs+json")

    async def lfs_put(self, request: Request, oid: str):
        # Like a presigned storage URL: no Authorization header is needed or expected.
        data = await request.body()
        if hashlib.sha256(data).hexdigest() != oid:
            return _error(400, None, "content does not match its sha256")
        self.lfs[oid] = data
        return Response(status_code=200, headers={"ETag": f'"{oid}"'})

    async def commit(self, request: Request, owner: str, name: str, revision: str):
        repo, error = self._repo(request, f"{owner}/{name}", write=True)
        if error:
            return error
        if revision not in repo.branches:
            return _error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        tree = dict(repo.commits[repo.branches[revision]])
        summary = ""
        for line in (await request.body()).splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                summary = value["summary"]
            elif key == "file":
                tree[value["path"]] = Blob(base64.b64decode(value["content"]), False)
            elif key == "lfsFile":
                if value["oid"] not in self.lfs:
                    return _error(422, None, f"LFS object {value['oid']} was never uploaded")
                tree[value["path"]] = Blob(self.lfs[value["oid"]], True)
            elif key == "deletedFile":
                if tree.pop(value["path"], None) is None:
                    return _error(404, "EntryNotFound", "A file with this name doesn't exist")
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                tree = {p: b for p, b in tree.items() if not p.startswith(prefix)}
            else:
                return _error(400, None, f"unknown commit operation {key}")
        for path, data in self.tamper.items():
            if data is None:
                tree.pop(path, None)
            elif path in tree:
                tree[path] = Blob(data, tree[path].lfs)
        oid = self._new_commit(repo, revision, tree, summary)
        return {"commitUrl": f"{_base(request)}/{owner}/{name}/commit/{oid}", "commitOid": oid,
                "success": True, "pullRequestUrl": None}

    async def tree(self, request: Request, owner: str, name: str, revision: str,
                   path: str = ""):
        repo, error = self._repo(request, f"{owner}/{name}")
        if error:
            return error
        commit, error = self._revision(repo, revision)
        if error:
            return error
        recursive = request.query_params.get("recursive", "").lower() in ("true", "1")
        return _listing(repo.commits[commit], path.strip("/"), recursive)

    async def model_info(self, request: Request, owner: str, name: str,
                         revision: str = "main"):
        repo, error = self._repo(request, f"{owner}/{name}")
        if error:
            return error
        commit, error = self._revision(repo, revision)
        if error:
            return error
        siblings = [{"rfilename": p, "size": len(b.data), "blobId": b.oid,
                     **({"lfs": {"size": len(b.data), "sha256": b.sha256,
                                 "pointerSize": len(lfs_pointer(b.sha256, len(b.data)))}}
                        if b.lfs else {})}
                    for p, b in sorted(repo.commits[commit].items())]
        return {"id": f"{owner}/{name}", "modelId": f"{owner}/{name}", "sha": commit,
                "private": repo.private, "siblings": siblings}

    async def resolve(self, request: Request, owner: str, name: str, revision: str, path: str):
        repo, error = self._repo(request, f"{owner}/{name}")
        if error:
            return error
        commit, error = self._revision(repo, revision)
        if error:
            return error
        blob = repo.commits[commit].get(path)
        if blob is None:
            response = _error(404, "EntryNotFound", f"{path} does not exist at {revision}")
            response.headers["X-Repo-Commit"] = commit
            return response
        headers = {"X-Repo-Commit": commit, "ETag": f'"{blob.etag}"',
                   "Content-Length": str(len(blob.data)), "Accept-Ranges": "bytes"}
        if blob.lfs:
            headers.update({"X-Linked-Etag": f'"{blob.sha256}"',
                            "X-Linked-Size": str(len(blob.data))})
        body = blob.data if request.method == "GET" else b""
        return Response(body, headers=headers, media_type="application/octet-stream")


def _is_lfs(path: str, size: int, sample: bytes) -> bool:
    return path.endswith(LFS_SUFFIXES) or size >= LFS_MIN_BYTES or b"\0" in sample


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _error(status: int, code: str | None, message: str) -> JSONResponse:
    headers = {"X-Error-Message": message}
    if code:
        headers["X-Error-Code"] = code
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _listing(tree: dict[str, Blob], prefix: str, recursive: bool) -> list[dict]:
    """Tree entries under `prefix`, as /api/models/<repo>/tree/<rev> lists them."""
    base = f"{prefix}/" if prefix else ""
    folders: set[str] = set()
    entries = []
    for path, blob in sorted(tree.items()):
        if not path.startswith(base):
            continue
        parts = path[len(base):].split("/")
        for depth in range(1, len(parts)):
            if recursive or depth == 1:
                folders.add(base + "/".join(parts[:depth]))
        if recursive or len(parts) == 1:
            entries.append(_file_entry(path, blob))
    entries += [{"type": "directory", "oid": hashlib.sha1(f.encode()).hexdigest(), "size": 0,
                 "path": f} for f in sorted(folders)]
    return entries


def _file_entry(path: str, blob: Blob) -> dict:
    entry = {"type": "file", "oid": blob.oid, "size": len(blob.data), "path": path}
    if blob.lfs:
        pointer = lfs_pointer(blob.sha256, len(blob.data))
        entry["lfs"] = {"oid": blob.sha256, "size": len(blob.data), "pointerSize": len(pointer)}
    return entry
