"""Lineage tab: find roots by text and filters, show a root's whole tree, override verdicts.

Admins and curators use it (`ctx.require_curator`); a curator may undo only their own
overrides, and bulk overrides are for admins only.

Searches and trees come from `wizardlab.store` (lineage queries) and `wizardlab.curation`;
overrides (one node, a whole filter, undo) go through `wizardlab.curation`, which writes
the audit log. Each node of a tree names the data recipes that include it
(`wizardlab.recipes.recipes_for_nodes`). All model and user text is escaped by `eval_ui.render`.
"""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from eval_ui import render
from eval_ui import review as review_ui
from eval_ui.context import AppContext, on_show, parse_id, ui_errors
from wizardlab import curation
from wizardlab.errors import UserError

ANY = "any"
TRUNCATED = "response cut off (token limit)"
ROOT_HEADERS = ["Root", "Run", "Seed instruction", "Matching nodes", "Evolutions", "Kept", "Eliminated", "Overrides"]
PAGE = 50


SORTS = {"root id": "root", "most matches": "matches", "newest root": "newest"}


def _rows(found: list[dict]) -> list[list]:
    return [[r["root_id"], r["run_id"], render.short(r["instruction"], 140), r["matches"], r["evolutions"],
             r["kept"], r["eliminated"], r["overrides"]] for r in found]


def roots_rows(store, run_id, filters: curation.Filters, page: int = 1, sort: str = "root id") -> list[list]:
    return _rows(store.find_roots(int(run_id) if run_id else None, filters.as_dict(), limit=PAGE,
                                  offset=(max(1, page) - 1) * PAGE, sort=SORTS.get(sort, "root")))


def search_page(store, run_id, filters: curation.Filters, page=1, sort: str = "root id") -> tuple[str, list[list], int]:
    """One page of the roots matching `filters` (one search pass; tree counts for this page only):
    (a line saying how many match and which page this is, the rows, the page, clamped to the pages there are)."""
    try:
        page = max(1, int(page or 1))
    except (TypeError, ValueError):
        raise UserError(f"page must be a whole number, got {page!r}") from None
    if sort not in SORTS:
        raise UserError(f"sort must be one of {', '.join(SORTS)}, got {sort!r}")
    matches = store.match_roots(int(run_id) if run_id else None, filters.as_dict(), SORTS[sort])
    if not matches:
        return render.note(f"No root matches ({filters.describe()}).", "info"), [], 1
    pages = -(-len(matches) // PAGE)
    page = min(page, pages)
    first = (page - 1) * PAGE
    rows = _rows(store.root_rows(matches[first:first + PAGE]))
    return (render.note(f"{len(matches)} roots match ({filters.describe()}) · page {page} of {pages} "
                        f"(roots {first + 1}–{first + len(rows)}, by {sort})", "info"), rows, page)


def tree_html(store, root_id: int) -> str:
    from wizardlab.recipes import recipes_for_nodes

    root = curation.build_tree(store, int(root_id))
    included = recipes_for_nodes(store, _ids(root))
    return f'<div class="wl-tree" data-root="{int(root_id)}">{_node_html(root, included)}</div>'


def _ids(node: dict) -> list[int]:
    return [node["id"], *(i for c in node["children"] for i in _ids(c))]


def _node_html(node: dict, included: dict | None = None) -> str:
    eff, verdict = node["effective_status"], node["status"]
    head = [f'<span class="wl-node-id">#{node["id"]}</span>',
            "seed" if node["round"] == 0 else f'round {node["round"]} · <b>{render.esc(node["operation"])}</b>',
            render.badge(eff)]
    if eff != verdict:
        head.append(f'<span class="wl-muted">rules said {render.esc(verdict)}</span>')
    head.append(render.chips(node["fail_rules"]))
    if (included or {}).get(node["id"]):
        head.append(f'<span class="wl-muted wl-in-recipes">in recipes: {render.esc(", ".join(included[node["id"]]))}'
                    "</span>")
    body = [f'<div class="wl-node-head">{" ".join(head)}</div>', render.text(node["instruction"])]
    if node.get("input"):
        body += ['<div class="wl-label">Input</div>', render.text(node["input"])]
    resp = node.get("response")
    body.append(f'<details class="wl-resp"><summary>Response ({len(resp or "")} characters)</summary>'
                f'{render.text(resp, empty="(no response)")}</details>')
    if node.get("error"):
        label = "Why" if eff == "eliminated" or verdict == "eliminated" else "Error"
        body.append(render.note(f"{label}: {node['error']}", "warn"))
    if node["overrides"]:
        body.append(_audit_html(node["overrides"]))
    kids = "".join(_node_html(c, included) for c in node["children"])
    if kids:
        body.append(f'<div class="wl-children">{kids}</div>')
    return f'<div class="wl-node wl-node-{render.STATUS_CLASS.get(eff, "pending")}" id="node-{node["id"]}">' \
           + "".join(body) + "</div>"


def _audit_html(overrides: list[dict]) -> str:
    items = []
    for o in overrides:
        undone = (f' <span class="wl-muted">(undone by {render.inline(o["undone_by"])} {render.when(o["undone_at"])})'
                  f'</span>') if o["undone_at"] else ""
        cls = "wl-undone" if o["undone_at"] else ""
        items.append(f'<li class="{cls}">override #{o["id"]}: {render.badge(o["action"])} by '
                     f'<b>{render.inline(o["user"])}</b> {render.when(o["created_at"])} · '
                     f'“{render.inline(o["reason"])}”{undone}</li>')
    return f'<div class="wl-label">Audit log</div><ul class="wl-audit">{"".join(items)}</ul>'


def run_choices(store) -> list[tuple[str, int]]:
    return [(f"#{r['id']} · {r.get('name') or ''} · {render.when(r['created_at'])}", r["id"])
            for r in store.list_runs("evolve")]


def build_tab(ctx: AppContext) -> None:
    """Trees (search, overrides), the curator's review queue, and the admins' review tasks."""
    with gr.Tabs(elem_id="wl-lin-tabs"):
        with gr.Tab("Trees", id="trees", elem_id="wl-lin-trees"):
            _build_trees(ctx)
        with gr.Tab("Review queue", id="review", elem_id="wl-lin-review"):
            review_ui.build_queue(ctx)
        with gr.Tab("Review tasks", id="review-tasks", visible=False, elem_id="wl-lin-review-tasks") as tasks_tab:
            review_ui.build_tasks(ctx)
    on_show(_admin_only(ctx), [tasks_tab])


def _build_trees(ctx: AppContext) -> None:
    gr.Markdown("Find seeds by text or filters, open a tree, and restore or eliminate nodes. "
                "Every decision is audited; exports and training use the effective status.")
    with gr.Row(equal_height=True):
        run = gr.Dropdown(label="Run", choices=[], scale=3, allow_custom_value=True, elem_id="wl-lin-run")
        text = gr.Textbox(label="Text contains", placeholder="instruction or input", scale=3, max_lines=1,
                          elem_id="wl-lin-text")
        rnd = gr.Dropdown([ANY] + [str(i) for i in range(0, 11)], value=ANY, label="Round", scale=1)
        op = gr.Dropdown([ANY, *curation.OPERATIONS], value=ANY, label="Operation", scale=2)
        status = gr.Dropdown([ANY, *curation.STATUSES], value=ANY, label="Status", scale=1)
        rule = gr.Dropdown([ANY, *curation.RULES, TRUNCATED], value=ANY, label="Rule or flag", scale=2,
                           elem_id="wl-lin-rule")
        find = gr.Button("Find", variant="primary", scale=0, min_width=100, elem_id="wl-lin-find",
                         elem_classes=["wl-inline"])
    with gr.Row(equal_height=True):
        found = gr.HTML(elem_id="wl-lin-found")
        prev_page = gr.Button("‹ Previous", scale=0, min_width=110, size="sm", elem_id="wl-lin-prev")
        page = gr.Number(value=1, label="Page", precision=0, minimum=1, scale=0, min_width=90, elem_id="wl-lin-page")
        sort = gr.Dropdown(list(SORTS), value="root id", label="Sort by", scale=0, min_width=150,
                           elem_id="wl-lin-sort")
        next_page = gr.Button("Next ›", scale=0, min_width=110, size="sm", elem_id="wl-lin-next")
    roots = gr.Dataframe(headers=ROOT_HEADERS, interactive=False, wrap=True, max_height=320,
                         column_widths=["7%", "6%", "43%", "10%", "9%", "7%", "9%", "9%"], elem_id="wl-lin-roots")
    with gr.Row():
        with gr.Column(scale=3):
            with gr.Row():
                root_id = gr.Textbox(label="Root id (or click a row above)", placeholder="e.g. 5", max_lines=1,
                                     elem_id="wl-lin-root")
                show = gr.Button("Show tree", scale=0, min_width=130, elem_id="wl-lin-show", elem_classes=["wl-inline"])
            tree = gr.HTML(render.note("Choose a root to see its lineage tree.", "info"), elem_id="wl-tree")
        with gr.Column(scale=1, min_width=280):
            with gr.Group():
                gr.Markdown("**Override one node**")
                node_id = gr.Textbox(label="Node id", placeholder="e.g. 128 (the #number in the tree)", max_lines=1,
                                     elem_id="wl-ov-node")
                action = gr.Radio(list(curation.ACTIONS), value="restore", label="Action", elem_id="wl-ov-action")
                reason = gr.Textbox(label="Reason (goes to the audit log)", lines=2, elem_id="wl-ov-reason")
                apply = gr.Button("Apply override", variant="primary", elem_id="wl-ov-apply")
            with gr.Group():
                gr.Markdown("**Undo an override**")
                undo_id = gr.Textbox(label="Override id", placeholder="from the audit log", max_lines=1,
                                     elem_id="wl-undo-id")
                undo = gr.Button("Undo", elem_id="wl-undo")
            with gr.Accordion("Bulk override: every node matching the filters (admins)", open=False,
                              visible=False) as bulk_box:
                b_action = gr.Radio(list(curation.ACTIONS), value="restore", label="Action")
                b_reason = gr.Textbox(label="Reason", lines=2, elem_id="wl-bulk-reason")
                with gr.Row():
                    b_count = gr.Button("Count", elem_id="wl-bulk-count")
                    b_apply = gr.Button("Apply to all", variant="stop", elem_id="wl-bulk-apply")
            msg = gr.HTML(elem_id="wl-lin-msg")
    _wire(ctx, SimpleNamespace(**locals()))


def _wire(ctx: AppContext, w: SimpleNamespace) -> None:
    """Connect the components built by `build_tab` (attributes of `w`) to their callbacks."""
    show_tree, search = _wire_search(ctx, w)
    # after an override the roots table is searched again, so its Overrides column is current
    after = dict(fn=search, inputs=[w.run, w.text, w.rnd, w.op, w.status, w.rule, w.sort, w.page],
                 outputs=[w.found, w.roots, w.page], api_visibility="private")
    _wire_overrides(ctx, w, after)
    _wire_bulk(ctx, w, after)
    on_show(_admin_only(ctx), [w.bulk_box])
    w.roots.select(_pick(ctx), None, w.root_id, api_visibility="private").then(
        show_tree, w.root_id, w.tree, api_visibility="private")


def _admin_only(ctx: AppContext):
    def show(request: gr.Request):
        """Admin-only widgets (bulk overrides, review tasks) appear for admins; curators never see them."""
        return gr.update(visible=True) if ctx.is_admin(request) else gr.skip()

    return show


def _filters(text, rnd, op, status, rule) -> curation.Filters:
    """The filter row; the Rule dropdown's TRUNCATED entry is the `truncated` flag, not a rule."""
    if rule == TRUNCATED:
        return curation.Filters.parse(text=text, round=rnd, operation=op, status=status, truncated=True)
    return curation.Filters.parse(text=text, round=rnd, operation=op, status=status, rule=rule)


def _pick(ctx: AppContext):
    def pick(evt: gr.SelectData, request: gr.Request):
        """A click on a row of the roots table puts its root id in the box."""
        if not ctx.can_curate(request) or evt.row_value is None:
            return gr.skip()
        return str(int(evt.row_value[0]))

    return pick


def _wire_search(ctx: AppContext, w: SimpleNamespace):
    @ui_errors
    def search(run_id, text, rnd, op, status, rule, sort, page, request: gr.Request):
        """A page of matching roots (Find starts at page 1; Previous/Next and the page box move)."""
        ctx.require_curator(request)
        return search_page(ctx.store(), run_id, _filters(text, rnd, op, status, rule), page, sort or "root id")

    def first_page(run_id, text, rnd, op, status, rule, sort, request: gr.Request):
        return search(run_id, text, rnd, op, status, rule, sort, 1, request)

    def step(delta):
        def go(run_id, text, rnd, op, status, rule, sort, page, request: gr.Request):
            return search(run_id, text, rnd, op, status, rule, sort, int(page or 1) + delta, request)
        return go

    @ui_errors
    def show_tree(root, request: gr.Request):
        ctx.require_curator(request)
        return tree_html(ctx.store(), parse_id(root, "root id"))

    def load(request: gr.Request):
        if not ctx.can_curate(request):
            return gr.skip()
        store = ctx.store()
        runs = store.list_runs("evolve")
        done = [r["id"] for r in runs if r["status"] == "done"]
        return gr.Dropdown(choices=run_choices(store), value=(done or [r["id"] for r in runs] or [None])[0])

    filt, out = [w.run, w.text, w.rnd, w.op, w.status, w.rule, w.sort], [w.found, w.roots, w.page]
    w.find.click(first_page, filt, out, api_name="lineage_search")
    w.text.submit(first_page, filt, out, api_visibility="private")
    w.sort.input(first_page, filt, out, api_visibility="private")
    w.page.submit(search, [*filt, w.page], out, api_name="lineage_search_page")
    w.prev_page.click(step(-1), [*filt, w.page], out, api_visibility="private")
    w.next_page.click(step(1), [*filt, w.page], out, api_visibility="private")
    w.show.click(show_tree, w.root_id, w.tree, api_name="lineage_tree")
    on_show(load, [w.run])
    return show_tree, search


def _wire_overrides(ctx: AppContext, w: SimpleNamespace, after: dict) -> None:
    @ui_errors
    def override(node, action, reason, request: gr.Request):
        user = ctx.require_curator(request)
        node = parse_id(node, "node id")
        curation.override_node(ctx.store(), node, action, reason, user["username"])
        root = ctx.store().get_node(node)["root_id"]
        return render.note(f"Node {node}: {action} recorded.", "ok"), "", tree_html(ctx.store(), root), str(root)

    @ui_errors
    def undo_override(oid, request: gr.Request):
        user = ctx.require_curator(request)
        oid = parse_id(oid, "override id")
        row = curation.undo(ctx.store(), oid, user["username"], own_only=user["role"] != "admin")
        root = ctx.store().get_node(row["node_id"])["root_id"]
        return render.note(f"Override {oid} undone.", "ok"), tree_html(ctx.store(), root), str(root)

    w.apply.click(override, [w.node_id, w.action, w.reason], [w.msg, w.reason, w.tree, w.root_id],
                  api_name="lineage_override").success(**after)
    w.undo.click(undo_override, [w.undo_id], [w.msg, w.tree, w.root_id], api_name="lineage_undo").success(**after)


def _wire_bulk(ctx: AppContext, w: SimpleNamespace, after: dict) -> None:
    @ui_errors
    def bulk(count_only, run_id, text, rnd, op, status, rule, action, reason, request):
        user = ctx.require_admin(request)
        if not run_id:
            raise UserError("choose a run for a bulk override")
        filters = _filters(text, rnd, op, status, rule)
        if count_only:
            n = curation.preview_bulk(ctx.store(), run_id, filters, action)
            return render.note(f"{action} would change {n} nodes of run {run_id} ({filters.describe()}).", "info")
        n = curation.bulk_override(ctx.store(), run_id, filters, action, reason, user["username"])
        return render.note(f"{action}: {n} nodes of run {run_id} ({filters.describe()}).", "ok")

    def bulk_count(run_id, text, rnd, op, status, rule, action, reason, request: gr.Request):
        return bulk(True, run_id, text, rnd, op, status, rule, action, reason, request)

    def bulk_apply(run_id, text, rnd, op, status, rule, action, reason, request: gr.Request):
        return bulk(False, run_id, text, rnd, op, status, rule, action, reason, request)

    bulk_in = [w.run, w.text, w.rnd, w.op, w.status, w.rule, w.b_action, w.b_reason]
    w.b_count.click(bulk_count, bulk_in, w.msg, api_name="lineage_bulk_count")
    w.b_apply.click(bulk_apply, bulk_in, w.msg, api_name="lineage_bulk_apply").success(**after)
