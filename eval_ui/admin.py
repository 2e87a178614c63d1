"""Admin tab: accounts (add, change role, disable/enable, reset password), background jobs (list, cancel),
backup, and the local model server (state, load now, stop).

Every callback starts with `ctx.require_admin(request)`, so an annotator calling these
endpoints over HTTP is refused on the server. The work is done by `wizardlab.auth` and
`wizardlab.jobs`.
"""

from __future__ import annotations

import time
from types import SimpleNamespace

import gradio as gr

from eval_ui import render
from eval_ui.context import AppContext, on_show, parse_id, ui_errors
from wizardlab import auth, jobs
from wizardlab.errors import UserError
from wizardlab.store.users import ROLES

USER_HEADERS = ["User", "Role", "Status", "Created (UTC)"]
LOGIN_HEADERS = ["Kind", "Account or address", "Failures (1 h)", "Refused while locked", "Locked", "Last (UTC)",
                 "Last address / account"]
JOB_HEADERS = ["Run", "Kind", "Status", "Created (UTC)", "By", "Progress", "Error"]


def users_rows(store) -> list[list]:
    return [[u["username"], u["role"], "disabled" if u["disabled"] else "active", render.when(u["created_at"])]
            for u in store.list_users()]


def login_rows(limiter) -> list[list]:
    """The login limiter's accounts and addresses with recent failures (user text: shown as plain cells)."""
    return [[r["kind"], r["key"], r["failures"], r["refused"],
             f"{r['locked_for']:.0f} s" if r["locked_for"] > 0 else "no",
             time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(r["last"])) if r["last"] else "", r["last_other"]]
            for r in limiter.snapshot()]


def jobs_rows(store) -> list[list]:
    return [[r["id"], r["kind"], r["status"], render.when(r["created_at"]), r.get("created_by") or "",
             jobs.progress_line(r), render.short((r.get("error") or "").splitlines()[0] if r.get("error") else "", 80)]
            for r in store.list_runs(limit=200)]


def build_tab(ctx: AppContext) -> None:
    gr.Markdown("### Accounts\nAdmins do everything; curators see Lineage (search, trees, overrides, review "
                "queues), a read-only Data tab and Judge; annotators see only the Judge tab.")
    users = gr.Dataframe(headers=USER_HEADERS, interactive=False, wrap=True, elem_id="wl-users")
    with gr.Row():
        with gr.Column(variant="panel"):
            gr.Markdown("**Add an account**")
            new_name = gr.Textbox(label="Username", max_lines=1)
            new_pw = gr.Textbox(label="Password (8+ characters)", type="password", max_lines=1)
            new_role = gr.Radio(list(ROLES), value="annotator", label="Role", elem_id="wl-new-role")
            add_btn = gr.Button("Add account", variant="primary")
        with gr.Column(variant="panel"):
            gr.Markdown("**Change an account**")
            who = gr.Dropdown(label="Account", choices=[], allow_custom_value=True)
            with gr.Row():
                disable_btn = gr.Button("Disable", variant="stop")
                enable_btn = gr.Button("Enable")
            reset_pw = gr.Textbox(label="New password", type="password", max_lines=1)
            reset_btn = gr.Button("Set password")
            with gr.Row(equal_height=True):
                role = gr.Radio(list(ROLES), value="curator", label="Role", scale=3, elem_id="wl-set-role")
                role_btn = gr.Button("Change role", scale=1, elem_id="wl-set-role-btn")
    msg = gr.HTML()
    gr.Markdown("### Failed logins\nSince the app started, per account and per address; a locked one is refused "
                "without its password being checked (see the server log for each attempt).")
    logins = gr.Dataframe(headers=LOGIN_HEADERS, interactive=False, wrap=True, elem_id="wl-failed-logins")
    gr.Markdown("### Background jobs\nEvery run started from the app or the command line (`python -m pipeline runs`).")
    jobs_table = gr.Dataframe(headers=JOB_HEADERS, interactive=False, wrap=True)
    with gr.Row():
        cancel_id = gr.Textbox(label="Run id", placeholder="e.g. 3", max_lines=1, scale=0, min_width=160)
        cancel_btn = gr.Button("Cancel job", variant="stop", scale=0, min_width=130, elem_classes=["wl-inline"])
        refresh_btn = gr.Button("Refresh", scale=0, min_width=110, elem_classes=["wl-inline"])
    gr.Markdown("### Backup\nA consistent copy of the database while people work (SQLite online backup), "
                "like `python -m pipeline backup`; restore with `python -m pipeline restore` (app stopped).")
    with gr.Row():
        backup_btn = gr.Button("Back up now", scale=0, min_width=160, elem_id="wl-backup")
        backup_file = gr.File(label="Backup", interactive=False, visible=False, elem_id="wl-backup-file")
    backup_msg = gr.HTML(elem_id="wl-backup-msg")
    gr.Markdown("### Local model\nJobs on the embedded model (or a local model directory) share one background "
                "process that keeps it loaded between jobs and commands, and exits by itself when unused "
                "(`python -m pipeline model-server`).")
    model_state = gr.HTML(elem_id="wl-model-server")
    with gr.Row():
        model_load_btn = gr.Button("Load the model now", scale=0, min_width=240, elem_id="wl-model-load")
        model_stop_btn = gr.Button("Stop model servers", variant="stop", scale=0, min_width=240,
                                   elem_id="wl-model-stop")
    model_msg = gr.HTML(elem_id="wl-model-msg")

    w = SimpleNamespace(**locals())
    refresh = _refresher(ctx)
    outs = [w.users, w.who, w.jobs_table, w.logins, w.model_state]
    after = dict(fn=refresh, inputs=None, outputs=outs, api_visibility="private")
    _wire_accounts(ctx, w, after)
    _wire_role(ctx, w, after)
    _wire_jobs(ctx, w, after)
    _wire_backup(ctx, w)
    _wire_model_server(ctx, w, after)
    w.refresh_btn.click(refresh, None, outs, api_name="admin_refresh")
    on_show(refresh, outs)


def model_server_html(settings) -> str:
    """What the model servers of this app's cache dir are doing, one line each."""
    from wizardlab.llm import model_server

    if settings.base_url:
        return render.note("The LLM is an endpoint: no local model runs here.", "info")
    if settings.keep_model_s <= 0:
        return render.note("WIZARDLAB_KEEP_MODEL_S is 0: each job loads the model in its own process.", "info")
    found = model_server.servers(settings.cache_dir)
    if not found:
        return render.note(f"No model server runs; the next job starts one (it stays "
                           f"{settings.keep_model_s:.0f} s after its last answer).", "info")
    return "".join(render.note(model_server.describe(info), "ok" if info.get("loaded") else "info") for info in found)


def _refresher(ctx: AppContext):
    def refresh(request: gr.Request):
        """Users and jobs tables; silent for annotators (the tab is hidden for them)."""
        if not ctx.is_admin(request):
            return gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
        store = ctx.store()
        jobs.refresh(store)
        names = [u["username"] for u in store.list_users()]
        return (users_rows(store), gr.Dropdown(choices=names), jobs_rows(store), login_rows(ctx.login_limiter),
                model_server_html(ctx.settings))

    return refresh


def _wire_accounts(ctx: AppContext, w: SimpleNamespace, after: dict) -> None:
    @ui_errors
    def add_user(name, password, role, request: gr.Request):
        ctx.require_admin(request)
        auth.add_user(ctx.store(), name, password, role)
        return render.note(f"Added {role} {name.strip()}.", "ok")

    @ui_errors
    def set_disabled(name, disabled, request):
        user = ctx.require_admin(request)
        if not name:
            raise UserError("choose an account first")
        auth.set_disabled(ctx.store(), name, disabled, acting_user=user["username"])
        return render.note(f"{'Disabled' if disabled else 'Enabled'} {name}.", "ok")

    def disable(name, request: gr.Request):
        return set_disabled(name, True, request)

    def enable(name, request: gr.Request):
        return set_disabled(name, False, request)

    @ui_errors
    def set_password(name, password, request: gr.Request):
        ctx.require_admin(request)
        if not name:
            raise UserError("choose an account first")
        auth.set_password(ctx.store(), name, password)
        return render.note(f"New password set for {name}.", "ok")

    # only the message is an output of the checks: a refused account keeps what was typed, unmarked
    w.add_btn.click(add_user, [w.new_name, w.new_pw, w.new_role], [w.msg], api_name="admin_add_user").success(
        lambda: ("", ""), None, [w.new_name, w.new_pw], api_visibility="private").then(**after)
    w.disable_btn.click(disable, [w.who], [w.msg], api_name="admin_disable_user").then(**after)
    w.enable_btn.click(enable, [w.who], [w.msg], api_name="admin_enable_user").then(**after)
    w.reset_btn.click(set_password, [w.who, w.reset_pw], [w.msg], api_name="admin_set_password").success(
        lambda: "", None, [w.reset_pw], api_visibility="private")


def _wire_role(ctx: AppContext, w: SimpleNamespace, after: dict) -> None:
    @ui_errors
    def set_role(name, role, request: gr.Request):
        user = ctx.require_admin(request)
        if not name:
            raise UserError("choose an account first")
        auth.set_role(ctx.store(), name, role, acting_user=user["username"])
        return render.note(f"{name} is now {role}.", "ok")

    w.role_btn.click(set_role, [w.who, w.role], [w.msg], api_name="admin_set_role").then(**after)


def _wire_jobs(ctx: AppContext, w: SimpleNamespace, after: dict) -> None:
    @ui_errors
    def cancel(run_id, request: gr.Request):
        ctx.require_admin(request)
        run_id = parse_id(run_id, "run id")
        return render.note(f"Run {run_id}: {jobs.cancel(ctx.store(), run_id)}.", "ok")

    w.cancel_btn.click(cancel, [w.cancel_id], [w.msg], api_name="admin_cancel_job").then(**after)


def _wire_model_server(ctx: AppContext, w: SimpleNamespace, after: dict) -> None:
    @ui_errors
    def load(request: gr.Request):
        ctx.require_admin(request)
        from wizardlab.llm import PermanentError, model_server

        if ctx.settings.base_url or ctx.settings.keep_model_s <= 0:
            raise UserError("no model server here: the LLM is an endpoint, or WIZARDLAB_KEEP_MODEL_S is 0")
        try:
            info = model_server.start_and_load(ctx.settings)
        except PermanentError as exc:
            raise UserError(str(exc)) from None
        return render.note(f"Model server pid {info['pid']} holds {info['model']} ({info['precision']}).", "ok")

    @ui_errors
    def stop(request: gr.Request):
        ctx.require_admin(request)
        from wizardlab.llm import model_server

        stopped = model_server.stop_servers(ctx.settings.cache_dir)
        return render.note(f"Stopped {len(stopped)} model server(s); the next job starts one again.", "ok")

    w.model_load_btn.click(load, None, [w.model_msg], api_name="admin_model_load").then(**after)
    w.model_stop_btn.click(stop, None, [w.model_msg], api_name="admin_model_stop").then(**after)


def _wire_backup(ctx: AppContext, w: SimpleNamespace) -> None:
    @ui_errors
    def backup_now(request: gr.Request):
        ctx.require_admin(request)
        from wizardlab.store.backup import backup, timestamped

        info = backup(ctx.settings.db, timestamped(ctx.data_dir.resolve() / "backups"))
        note = render.note(f"Backup {info['path']}: {info['bytes']:,} bytes in {info['seconds']} s, integrity "
                           f"{info['integrity']}.", "ok")
        return note, gr.File(value=info["path"], visible=True)

    w.backup_btn.click(backup_now, None, [w.backup_msg, w.backup_file], api_name="admin_backup")
