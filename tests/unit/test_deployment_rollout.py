"""Rollouts as a user sees them, over the in-memory store with a simulated agent: rolling
updates within maxSurge/maxUnavailable, Recreate, scaling (also mid-rollout), the progress
deadline and automatic rollback, revisions pinned to image digests, history limits.
The simulated plane is tests.unit.rollout_support."""

from __future__ import annotations

from controlplane.controllers.deployment import history, revisions
from controlplane.digests import StaticDigests, original_annotation
from controlplane.reconcile.clock import ManualClock, settle
from controlplane.store.memory import MemoryStore
from pilothouse.kinds import Kind
from pilothouse.v1 import objects_pb2
from tests.unit.rollout_support import (
    CRASHING,
    DIGESTS,
    D,
    Plane,
    SamplingStore,
    eventually,
    make_deployment,
)

# --------------------------------------------------------------------------------- rollouts


async def test_surge_one_unavailable_zero_keeps_ten_available_and_at_most_eleven_pods() -> None:
    store = SamplingStore()
    async with Plane(store) as plane:
        await plane.objects.create(make_deployment(replicas=10, surge=1, unavailable=0))
        await plane.rolled_out(10, "web:v1", "the first rollout never completed")
        store.sampling = True
        await plane.change(lambda d: setattr(d.spec.template.spec.containers[0], "image", "web:v2"))
        await plane.rolled_out(10, "web:v2", "the rolling update to web:v2 never completed")
        store.sampling = False
    assert len(store.samples) >= 40, "the rollout was not sampled step by step"
    worst = min(s.available for s in store.samples)
    most = max(s.pods for s in store.samples)
    assert worst >= 10, f"only {worst} of 10 replicas were available at one point"
    assert most <= 11, f"{most} pods ran at once although maxSurge is 1"
    assert any(len(s.hashes) == 2 for s in store.samples), "old and new never overlapped"


async def test_quarter_surge_and_unavailable_stall_at_8_available_and_13_pods() -> None:
    store = SamplingStore()
    async with Plane(store) as plane:
        # 25% / 25%: surge 3, unavailable 2
        await plane.objects.create(make_deployment(replicas=10))
        await plane.rolled_out(10, "web:v1", "the first rollout never completed")
        store.sampling = True
        await plane.change(lambda d: setattr(d.spec.template.spec.containers[0], "image", CRASHING))

        async def stalled() -> object:
            rss = await plane.replicasets()
            new = rss[2].spec.replicas if 2 in rss else None
            counts = (rss[1].spec.replicas, new, len(await plane.pods()))
            return counts == (8, 5, 13) or counts

        await eventually(stalled, "a crashing rollout of 10 at 25%/25% should stall at 8 + 5")
        await plane.quiet()
        assert (await plane.replicasets())[2].spec.replicas == 5, "the rollout went on"
        store.sampling = False
    assert min(s.available for s in store.samples) >= 8, "fewer than 10 - 2 available"
    assert max(s.pods for s in store.samples) <= 13, "more than 10 + 3 pods"


async def test_recreate_never_runs_old_and_new_pods_together() -> None:
    store = SamplingStore()
    async with Plane(store) as plane:
        await plane.objects.create(
            make_deployment(replicas=5, strategy="Recreate", surge=None, unavailable=None)
        )
        await plane.rolled_out(5, "web:v1", "the first rollout never completed")
        store.sampling = True
        await plane.change(lambda d: setattr(d.spec.template.spec.containers[0], "image", "web:v2"))
        await plane.rolled_out(5, "web:v2", "the Recreate rollout never completed")
        store.sampling = False
    assert store.samples, "nothing was sampled"
    mixed = [s for s in store.samples if len(s.hashes) > 1]
    assert not mixed, f"old and new pods ran together: {mixed[0]}"
    assert min(s.pods for s in store.samples) == 0, "Recreate never went down to 0 pods"


async def test_a_new_template_mid_rollout_rolls_over_to_it() -> None:
    async with Plane(MemoryStore()) as plane:
        await plane.objects.create(make_deployment(replicas=4))
        await plane.rolled_out(4, "web:v1", "the first rollout never completed")
        await plane.change(lambda d: setattr(d.spec.template.spec.containers[0], "image", CRASHING))
        await eventually(
            lambda: _has_revision(plane, 2), "the crashing revision 2 was never created"
        )
        await plane.change(lambda d: setattr(d.spec.template.spec.containers[0], "image", "web:v3"))
        await plane.rolled_out(4, "web:v3", "the rollout did not move on to web:v3")
        rss = await plane.replicasets()
        assert rss[1].spec.replicas == 0 and rss[2].spec.replicas == 0 and rss[3].spec.replicas == 4


async def _has_revision(plane: Plane, number: int) -> bool:
    return number in await plane.replicasets()


# ---------------------------------------------------------------------------------- scaling


async def test_scale_3_to_30_to_0_to_5_with_every_state_correct() -> None:
    store = SamplingStore()
    async with Plane(store) as plane:
        await plane.objects.create(make_deployment(replicas=3))
        await plane.rolled_out(3, "web:v1", "3 replicas never ran")
        previous = 3
        for replicas in (30, 0, 5):
            store.samples.clear()
            store.sampling = True
            await plane.change(lambda d, n=replicas: setattr(d.spec, "replicas", n))
            await plane.rolled_out(replicas, "web:v1", f"scaling to {replicas} never finished")
            store.sampling = False
            most = max(s.pods for s in store.samples)
            assert most <= max(previous, replicas), (
                f"scaling {previous} -> {replicas} ran {most} pods at one point"
            )
            if replicas < previous:
                counts = [s.pods for s in store.samples]
                assert counts == sorted(counts, reverse=True), "scale-down added pods"
            rss = await plane.replicasets()
            assert list(rss) == [1], f"scaling made new revisions: {sorted(rss)}"
            rs = rss[1]
            assert rs.spec.replicas == replicas
            assert rs.metadata.annotations[history.DESIRED_REPLICAS] == str(replicas)

            async def rs_status(n: int = replicas) -> object:
                s = (await plane.replicasets())[1].status
                return (s.replicas, s.ready_replicas, s.available_replicas) == (n, n, n) or str(s)

            await eventually(rs_status, f"ReplicaSet status never counted {replicas}")
            previous = replicas


async def test_scale_down_removes_unscheduled_then_not_ready_then_newest_ready_pods() -> None:
    async with Plane(MemoryStore()) as plane:
        plane.agent.crashing.add("web:v1")  # nothing becomes Ready on its own
        await plane.objects.create(make_deployment(replicas=5, image="web:v1"))
        await eventually(lambda: _pod_count(plane, 5), "5 pods never appeared")
        await plane.quiet()  # bound and Running: the hollow agent writes them no more
        pods = sorted(await plane.pods(), key=lambda p: p.metadata.name)
        # Ready at different times: pods[0] longest, pods[1] later; pods[2..4] never.
        for index, at in ((0, 100.0), (1, 200.0)):
            fresh = await plane.objects.get(Kind.POD, "default", pods[index].metadata.name)
            ready = fresh.status.conditions.add(type="Ready", status="True")
            ready.last_transition_time.FromSeconds(int(1_700_000_000 + at))
            await plane.objects.update_status(fresh)
        await plane.change(lambda d: setattr(d.spec, "replicas", 1))
        await eventually(lambda: _pod_count(plane, 1), "scale-down to 1 never happened")
        left = await plane.pods()
        assert left[0].metadata.name == pods[0].metadata.name, (
            "scale-down kept a pod other than the one Ready the longest"
        )


async def _pod_count(plane: Plane, n: int) -> object:
    count = len(await plane.pods())
    return count == n or count


async def test_scaling_mid_rollout_is_proportional() -> None:
    async with Plane(MemoryStore()) as plane:
        await plane.objects.create(make_deployment(replicas=10, surge=3, unavailable=2))
        await plane.rolled_out(10, "web:v1", "the first rollout never completed")
        await plane.change(lambda d: setattr(d.spec.template.spec.containers[0], "image", CRASHING))

        async def sizes(old: int, new: int) -> object:
            rss = await plane.replicasets()
            got = (rss[1].spec.replicas, rss.get(2, rss[1]).spec.replicas, len(await plane.pods()))
            return got == (old, new, old + new) or got

        await eventually(lambda: sizes(8, 5), "the crashing rollout should stall at 8 + 5")
        await plane.change(lambda d: setattr(d.spec, "replicas", 15))
        await eventually(lambda: sizes(11, 7), "scaling 10 -> 15 should split 3 old + 2 new")
        rss = await plane.replicasets()
        assert rss[1].metadata.annotations[history.MAX_REPLICAS] == "18"


async def test_paused_deployment_scales_but_does_not_roll_out_until_resumed() -> None:
    async with Plane(MemoryStore()) as plane:
        await plane.objects.create(make_deployment(replicas=2))
        await plane.rolled_out(2, "web:v1", "the first rollout never completed")

        def pause(d: objects_pb2.Deployment) -> None:
            d.spec.paused = True
            d.spec.replicas = 4
            d.spec.template.spec.containers[0].image = "web:v2"

        await plane.change(pause)

        async def scaled() -> object:
            d = await plane.deployment()
            pods = await plane.pods()
            images = {p.metadata.annotations[original_annotation("main")] for p in pods}
            progressing = {c.type: c.reason for c in d.status.conditions}["Progressing"]
            got = (len(pods), images, d.status.available_replicas, progressing)
            return got == (4, {"web:v1"}, 4, "DeploymentPaused") or got

        await eventually(scaled, "a paused Deployment should still scale to 4 of its old template")
        assert list(await plane.replicasets()) == [1], "a paused Deployment rolled out"
        await plane.change(lambda d: setattr(d.spec, "paused", False))
        await plane.rolled_out(4, "web:v2", "resuming did not roll out web:v2")


# ------------------------------------------------------------------ failure and rollback


async def test_crashing_image_hits_the_deadline_and_rolls_back_to_the_available_revision() -> None:
    clock = ManualClock()
    async with Plane(MemoryStore(), clock=clock) as plane:
        d = make_deployment(replicas=3, deadline=30)
        d.spec.rollback_on_failure = True
        await plane.objects.create(d)
        await plane.rolled_out(3, "web:v1", "the first rollout never completed")
        await plane.change(lambda d: setattr(d.spec.template.spec.containers[0], "image", CRASHING))
        await eventually(lambda: _has_revision(plane, 2), "the crashing revision never started")
        await plane.quiet()
        await clock.advance(20)
        await settle()
        assert (await plane.deployment()).spec.template.spec.containers[0].image == CRASHING, (
            "rolled back before the progress deadline"
        )
        await clock.advance(11)

        async def rolled_back() -> object:
            # A pass that met a Conflict (its cache a write behind, more likely under load)
            # retries after the key's backoff, on this clock: let that much time pass.
            await clock.advance(0.01)
            d = await plane.deployment()
            return history.ROLLBACK_REASON in d.metadata.annotations or str(d.status)

        await eventually(rolled_back, "no automatic rollback after the progress deadline")
        await plane.rolled_out(3, "web:v1", "the rollback did not bring back 3 available pods")
        d = await plane.deployment()
        reason = d.metadata.annotations[history.ROLLBACK_REASON]
        assert "revision 2" in reason and "revision 1" in reason, reason
        assert d.spec.template.spec.containers[0].image == f"web@{D[1]}"
        assert d.metadata.annotations[revisions.REVISION_ANNOTATION] == "3"
        rss = await plane.replicasets()
        assert sorted(rss) == [2, 3], "revision 1 should have become revision 3"
        assert history.ROLLOUT_FAILED in rss[2].metadata.annotations
        assert rss[2].spec.replicas == 0
        reasons = {e.reason for e in await plane.events()}
        assert {"ProgressDeadlineExceeded", "DeploymentRollback"} <= reasons, reasons
        # No loop: time passes, nothing rolls anywhere.
        for _ in range(5):
            await clock.advance(100)
        await settle()
        assert sorted(await plane.replicasets()) == [2, 3]
        conditions = {c.type: c.reason for c in (await plane.deployment()).status.conditions}
        assert conditions["Progressing"] == "NewReplicaSetAvailable"


async def test_deadline_without_rollback_on_failure_only_reports() -> None:
    clock = ManualClock()
    async with Plane(MemoryStore(), clock=clock) as plane:
        await plane.objects.create(make_deployment(replicas=2, deadline=10))
        await plane.rolled_out(2, "web:v1", "the first rollout never completed")
        await plane.change(lambda d: setattr(d.spec.template.spec.containers[0], "image", CRASHING))
        await eventually(lambda: _has_revision(plane, 2), "the crashing revision never started")
        await plane.quiet()
        await clock.advance(11)

        async def timed_out() -> object:
            conditions = {c.type: c for c in (await plane.deployment()).status.conditions}
            p = conditions.get("Progressing")
            return (
                p is not None and (p.status, p.reason) == ("False", "ProgressDeadlineExceeded")
            ) or str(p)

        await eventually(timed_out, "Progressing never became ProgressDeadlineExceeded")
        d = await plane.deployment()
        assert d.spec.template.spec.containers[0].image == CRASHING, "rolled back without opt-in"


# ---------------------------------------------------------------- revisions and digests


async def test_rollback_to_revision_1_runs_its_digests_after_the_tag_moved() -> None:
    resolver = StaticDigests(DIGESTS)
    async with Plane(MemoryStore(), resolver=resolver) as plane:
        d = make_deployment(replicas=2)
        d.metadata.annotations[history.CHANGE_CAUSE] = "first release"
        await plane.objects.create(d)
        await plane.rolled_out(2, "web:v1", "revision 1 never rolled out")
        for image in ("web:v2", "web:v3"):

            def edit(d: objects_pb2.Deployment, image: str = image) -> None:
                d.spec.template.spec.containers[0].image = image
                d.metadata.annotations[history.CHANGE_CAUSE] = f"release {image}"

            await plane.change(edit)
            await plane.rolled_out(2, image, f"{image} never rolled out")
        rss = await plane.replicasets()
        assert sorted(rss) == [1, 2, 3]
        assert rss[1].spec.template.spec.containers[0].image == f"web@{D[1]}"
        assert rss[1].metadata.annotations[history.CHANGE_CAUSE] == "first release"
        assert rss[3].metadata.annotations[history.CHANGE_CAUSE] == "release web:v3"
        resolver.digests["web:v1"] = D[9]  # the tag is pushed anew
        # `rollout undo --to-revision 1`: the Deployment gets revision 1's (pinned) template.
        await plane.change(lambda d: d.spec.template.CopyFrom(history.template_of(rss[1])))
        await plane.rolled_out(2, "web:v1", "the rollback to revision 1 never completed")
        images = {p.spec.containers[0].image for p in await plane.pods()}
        assert images == {f"web@{D[1]}"}, f"revision 1 now runs {images}, not its own digest"
        rss = await plane.replicasets()
        assert sorted(rss) == [2, 3, 4], "revision 1 should have become revision 4"
        assert rss[4].metadata.name == f"web-{revisions.template_hash(d.spec.template)}"


async def test_unresolvable_tag_keeps_the_tag_with_a_warning() -> None:
    async with Plane(MemoryStore(), resolver=StaticDigests({})) as plane:
        await plane.objects.create(make_deployment(replicas=1, image="web:v1"))
        await eventually(lambda: _pod_count(plane, 1), "the pod was never created")
        pod = (await plane.pods())[0]
        assert pod.spec.containers[0].image == "web:v1"
        assert original_annotation("main") not in pod.metadata.annotations
        events = [e for e in await plane.events() if e.reason == "ImageDigestUnresolved"]
        assert events and events[0].type == "Warning", "no warning about the unresolved tag"
        assert "web:v1" in events[0].message


async def test_history_limit_keeps_only_the_newest_old_revisions() -> None:
    async with Plane(MemoryStore()) as plane:
        await plane.objects.create(make_deployment(replicas=1, history_limit=2))
        await plane.rolled_out(1, "web:v1", "revision 1 never rolled out")
        for image in ("web:v2", "web:v3", "web:v4", "web:v5"):
            await plane.change(
                lambda d, image=image: setattr(d.spec.template.spec.containers[0], "image", image)
            )
            await plane.rolled_out(1, image, f"{image} never rolled out")

        async def collected() -> object:
            return sorted(await plane.replicasets()) == [3, 4, 5] or sorted(
                await plane.replicasets()
            )

        await eventually(collected, "old revisions beyond revisionHistoryLimit 2 were kept")
