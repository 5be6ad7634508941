"""A busy EKS cluster's audit stream, for the processing figures (`bench.processing`).

An API server's audit log is mostly machines: node heartbeats (`leases`), controllers' reads and
watches, health checks and status updates; people's changes (pod creates, exec, RBAC) are a few in a
hundred. No published EKS audit capture with a clear licence gives the proportions, so `MIX` is the
bench's own assumption, built on the fixtures' event shapes: the project's written EKS events
(leases, tokenreviews, pod update with managed fields) and falco's (a pod create, exec, a
clusterrolebinding). Levels are those of a GCE-style server policy, which EKS's resembles: reads at
Request, writes at RequestResponse, secrets, configmaps and health checks at Metadata.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from typing import Any

import orjson

from bench import ACCOUNT, FIXTURES

Event = dict[str, Any]
NODES = tuple(f"ip-10-0-{12 + n % 6}-{7 + 13 * n}.ec2.internal" for n in range(12))
CONTROLLERS = (
    ("system:kube-controller-manager", "kube-controller-manager/v1.29.3 (linux/amd64) kubernetes/6813625"),
    ("system:kube-scheduler", "kube-scheduler/v1.29.3 (linux/amd64) kubernetes/6813625"),
    ("system:serviceaccount:kube-system:aws-load-balancer-controller", "aws-load-balancer-controller/v2.7.1"),
    ("system:serviceaccount:kube-system:coredns", "coredns/v1.11.1"),
    ("system:serviceaccount:kube-system:ebs-csi-controller-sa", "csi-provisioner/v4.0.0"),
    ("system:serviceaccount:karpenter:karpenter", "karpenter/v0.35.0"),
)
READS = (("", "configmaps"), ("", "pods"), ("", "nodes"), ("", "services"), ("discovery.k8s.io", "endpointslices"))
SSO_USER = {
    "username": "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Admin_0a1b2c3d/alice@example.com",
    "uid": f"aws-iam-authenticator:{ACCOUNT}:AROAEXAMPLEROLEID0002",
    "groups": ["system:authenticated"],
    "extra": {
        "accessKeyId": ["ASIAEXAMPLEKEY000002"],
        "arn": [f"arn:aws:sts::{ACCOUNT}:assumed-role/AWSReservedSSO_Admin_0a1b2c3d/alice@example.com"],
        "canonicalArn": [f"arn:aws:iam::{ACCOUNT}:role/AWSReservedSSO_Admin_0a1b2c3d"],
        "sessionName": ["alice@example.com"],
    },
}
KUBECTL = "kubectl/v1.29.3 (darwin/arm64) kubernetes/6813625"


def _written(line: int) -> Event:
    """A fresh copy of a line (1-based) of the project's written EKS events."""
    event: Event = orjson.loads(_fixture_lines("written_eks-noise-and-secrets.jsonl")[line - 1])
    return event


def _falco(name: str) -> Event:
    event: Event = orjson.loads(_fixture_lines(f"falco/{name}.json")[0])
    return event


@functools.cache
def _fixture_lines(name: str) -> list[str]:
    return (FIXTURES / "k8s-audit" / name).read_text().splitlines()


def _event(verb: str, uri: str, user: Event, agent: str, level: str, **more: Any) -> Event:
    """An EKS-shaped event, its fields in the API server's order; `objectRef` and the objects in `more`."""
    event: Event = {"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": level, "auditID": ""}
    event.update(stage=more.pop("stage", "ResponseComplete"), requestURI=uri, verb=verb, user=user)
    event.update(sourceIPs=[more.pop("ip", "10.0.40.9")], userAgent=agent)
    if "objectRef" in more:
        event["objectRef"] = more.pop("objectRef")
    event["responseStatus"] = {"metadata": {}, "code": more.pop("code", 200)}
    event.update(more)
    event.update(requestReceivedTimestamp="", stageTimestamp="")
    if event["responseStatus"]["code"] < 300 and "objectRef" in event:
        reason = f'RBAC: allowed by ClusterRoleBinding "{user["username"].rsplit(":", 1)[-1]}" of ClusterRole "edit"'
        event["annotations"] = {"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": reason}
    return event


def _account(name: str) -> Event:
    namespace = name.split(":")[2] if name.startswith("system:serviceaccount:") else ""
    groups = ["system:serviceaccounts", f"system:serviceaccounts:{namespace}"] if namespace else []
    return {"username": name, "groups": [*groups, "system:authenticated"]}


def _node(rng: random.Random) -> tuple[str, Event, str]:
    """A node's name, its kubelet's user and its address."""
    node = rng.choice(NODES)
    user = {"username": f"system:node:{node}", "groups": ["system:nodes", "system:authenticated"]}
    return node, user, node.split(".")[0].removeprefix("ip-").replace("-", ".")


def node_lease(rng: random.Random) -> Event:
    node, user, ip = _node(rng)
    lease = _written(7)
    ref = {**lease["objectRef"], "name": node, "resourceVersion": str(rng.randrange(10**6))}
    uri = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node}?timeout=10s"
    request, response = (_renamed(lease[side], node) for side in ("requestObject", "responseObject"))
    agent = lease["userAgent"]
    return _event(
        "update",
        uri,
        user,
        agent,
        "RequestResponse",
        objectRef=ref,
        ip=ip,
        requestObject=request,
        responseObject=response,
    )


def _renamed(lease: Event, node: str) -> Event:
    return {**lease, "metadata": {**lease["metadata"], "name": node}, "spec": {**lease["spec"], "holderIdentity": node}}


def leader_lease(rng: random.Random) -> Event:
    name, agent = rng.choice(CONTROLLERS[:3])
    holder = name.rsplit(":", 1)[-1]
    ref = {"resource": "leases", "namespace": "kube-system", "name": holder, "apiGroup": "coordination.k8s.io"}
    uri = f"/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/{holder}?timeout=5s"
    if rng.random() < 0.5:
        return _event("get", uri, _account(name), agent, "Request", objectRef={**ref, "apiVersion": "v1"})
    lease = {"kind": "Lease", "apiVersion": "coordination.k8s.io/v1", "metadata": {"name": holder}}
    lease["spec"] = {"holderIdentity": f"{holder}_5d8f0c2e", "leaseDurationSeconds": 15, "leaseTransitions": 3}
    return _event(
        "update",
        uri,
        _account(name),
        agent,
        "RequestResponse",
        objectRef=ref,
        requestObject=lease,
        responseObject=lease,
    )


def controller_read(verb: str) -> Callable[[random.Random], Event]:
    def read(rng: random.Random) -> Event:
        name, agent = rng.choice(CONTROLLERS)
        group, resource = rng.choice(READS)
        prefix = f"/apis/{group}/v1" if group else "/api/v1"
        ref: Event = {"resource": resource, "apiVersion": "v1"} | ({"apiGroup": group} if group else {})
        uri = f"{prefix}/{resource}"
        if verb == "get":
            ref["name"] = f"{resource[:-1]}-{rng.randrange(40)}"
            uri = f"{prefix}/namespaces/kube-system/{resource}/{ref['name']}"
        elif verb == "watch":
            uri += f"?allowWatchBookmarks=true&resourceVersion={rng.randrange(10**6)}&timeoutSeconds=482&watch=true"
        stage = "ResponseStarted" if verb == "watch" and rng.random() < 0.5 else "ResponseComplete"
        return _event(verb, uri, _account(name), agent, "Request", objectRef=ref, stage=stage, ip="10.0.3.15")

    return read


def health(rng: random.Random) -> Event:
    uri = rng.choice(("/healthz", "/readyz", "/livez", "/livez/etcd", "/readyz?verbose", "/healthz?timeout=32s"))
    user = {"username": "system:anonymous", "groups": ["system:unauthenticated"]}
    return _event("get", uri, user, "kube-probe/1.29+", "Metadata", ip="10.0.12.7")


def scrape(rng: random.Random) -> Event:
    uri, agent = rng.choice((("/metrics", "cwagent/1.300"), ("/version", KUBECTL), ("/openapi/v2", KUBECTL)))
    return _event("get", uri, _account("system:serviceaccount:amazon-cloudwatch:cloudwatch-agent"), agent, "Metadata")


def token_review(rng: random.Random) -> Event:
    return _written(5)


def access_review(rng: random.Random) -> Event:
    name, agent = rng.choice(CONTROLLERS[2:])
    ref = {"resource": "subjectaccessreviews", "apiGroup": "authorization.k8s.io", "apiVersion": "v1"}
    spec = {"resourceAttributes": {"verb": "get", "resource": "pods"}, "user": "system:serviceaccount:default:reader"}
    review = {"kind": "SubjectAccessReview", "apiVersion": "authorization.k8s.io/v1", "spec": spec}
    uri = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
    return _event(
        "create", uri, _account(name), agent, "RequestResponse", objectRef=ref, code=201,
        requestObject=review, responseObject={**review, "status": {"allowed": True}},
    )  # fmt: skip


def status_patch(rng: random.Random) -> Event:
    node, user, ip = _node(rng)
    patch: Event
    if rng.random() < 0.6:
        ref = {"resource": "nodes", "name": node, "apiVersion": "v1", "subresource": "status"}
        patch = {"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}]}}
        uri = f"/api/v1/nodes/{node}/status?timeout=10s"
    else:
        pod = f"app-{rng.randrange(300)}"
        ref = {"resource": "pods", "namespace": "default", "name": pod, "apiVersion": "v1", "subresource": "status"}
        patch = {"status": {"conditions": [{"type": "ContainersReady", "status": "True"}], "podIP": "10.0.20.5"}}
        uri = f"/api/v1/namespaces/default/pods/{pod}/status"
    agent = "kubelet/v1.29.3 (linux/amd64) kubernetes/6813625"
    return _event("patch", uri, user, agent, "Request", objectRef=ref, ip=ip, requestObject=patch)


def node_get(rng: random.Random) -> Event:
    node, user, ip = _node(rng)
    ref = {"resource": "nodes", "name": node, "apiVersion": "v1"}
    agent = "kubelet/v1.29.3 (linux/amd64) kubernetes/6813625"
    return _event("get", f"/api/v1/nodes/{node}?timeout=10s", user, agent, "Request", objectRef=ref, ip=ip)


def configmap_update(rng: random.Random) -> Event:
    user = _account("system:serviceaccount:kube-system:cluster-autoscaler")
    ref = {
        "resource": "configmaps",
        "namespace": "kube-system",
        "name": "cluster-autoscaler-status",
        "apiVersion": "v1",
    }
    uri = "/api/v1/namespaces/kube-system/configmaps/cluster-autoscaler-status"
    return _event("update", uri, user, "cluster-autoscaler/v1.29.0", "Metadata", objectRef=ref)


def secret_get(rng: random.Random) -> Event:
    name, agent = rng.choice(CONTROLLERS[2:])
    secret = rng.choice(("db-credentials", "webhook-tls", "registry-pull"))
    ref = {"resource": "secrets", "namespace": "kube-system", "name": secret, "apiVersion": "v1"}
    uri = f"/api/v1/namespaces/kube-system/secrets/{secret}"
    return _event("get", uri, _account(name), agent, "Metadata", objectRef=ref)


def forbidden(rng: random.Random) -> Event:
    ref = {"resource": "secrets", "namespace": "kube-system", "apiVersion": "v1"}
    user = _account("system:serviceaccount:default:default")
    return _event(
        "list", "/api/v1/namespaces/kube-system/secrets", user, "curl/8.5.0", "Metadata", objectRef=ref, code=403
    )


def pod_create(rng: random.Random) -> Event:
    created = _falco("create_nginx_pod_unprivileged")
    ref = {"resource": "pods", "namespace": "default", "apiVersion": "v1"}
    user = _account("system:serviceaccount:kube-system:replicaset-controller")
    agent = f"{CONTROLLERS[0][1]}/system:serviceaccount:kube-system:replicaset-controller"
    objects = {side: created[side] for side in ("requestObject", "responseObject")}
    return _event(
        "create", "/api/v1/namespaces/default/pods", user, agent, "RequestResponse", objectRef=ref, code=201, **objects
    )


def pod_change(rng: random.Random) -> Event:
    updated = _written(6)
    return {**updated, "user": SSO_USER, "sourceIPs": ["198.51.100.23"]}


def pod_exec(rng: random.Random) -> Event:
    ref = {"resource": "pods", "namespace": "default", "name": "api-7d4b9c", "apiVersion": "v1", "subresource": "exec"}
    uri = "/api/v1/namespaces/default/pods/api-7d4b9c/exec?command=sh&container=api&stdin=true&stdout=true&tty=true"
    return _event(
        "create",
        uri,
        SSO_USER,
        KUBECTL,
        "Request",
        objectRef=ref,
        code=101,
        stage="ResponseStarted",
        ip="198.51.100.23",
    )


def binding_create(rng: random.Random) -> Event:
    created = _falco("create_clusterrolebinding")
    keep = ("objectRef", "requestObject", "responseObject")
    return _event(
        "create", created["requestURI"], SSO_USER, KUBECTL, "RequestResponse", code=201, ip="198.51.100.23",
        **{name: created[name] for name in keep if name in created},
    )  # fmt: skip


MIX: tuple[tuple[str, float, Callable[[random.Random], Event]], ...] = (
    ("node lease renewals (update, kube-node-lease)", 20, node_lease),
    ("leader-election leases (get, update)", 10, leader_lease),
    ("controllers' get", 10, controller_read("get")),
    ("controllers' list", 7, controller_read("list")),
    ("controllers' watch", 9, controller_read("watch")),
    ("health checks (/healthz, /readyz, /livez)", 10, health),
    ("/metrics, /version, /openapi", 4, scrape),
    ("tokenreviews", 4, token_review),
    ("subjectaccessreviews", 2, access_review),
    ("kubelets' nodes/status and pods/status patches", 10, status_patch),
    ("kubelets' node gets", 2, node_get),
    ("configmap updates", 3, configmap_update),
    ("secrets gets", 3, secret_get),
    ("forbidden secrets lists (403)", 1, forbidden),
    ("pod creates", 2, pod_create),
    ("pod updates by a person (managedFields)", 2, pod_change),
    ("exec into a pod", 0.5, pod_exec),
    ("clusterrolebinding creates", 0.5, binding_create),
)
"""Each kind of event, its share in percent, and its maker."""


def mix_events(rng: random.Random) -> Callable[[], Event]:
    """A maker of the next event of the mix (a fresh dict each time; times and `auditID` left to the caller)."""
    makers = [maker for _, _, maker in MIX]
    weights = [share for _, share, _ in MIX]
    return lambda: rng.choices(makers, weights)[0](rng)
