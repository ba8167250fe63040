// The API panel: every request the person's actions made, newest first, exactly as sent and
// answered, each with a curl line. The page's own periodic refreshes are left out.

import { onExchange } from "./api.js";
import { byId, element } from "./dom.js";
import { exchangeDetails } from "./exchange.js";

const CALLS_SHOWN_MAX = 20;

export function createCallsPanel() {
  const list = byId("calls-list");
  onExchange((exchange) => {
    if (exchange.background || exchange.path === "/ui/session") return;
    for (const open of list.querySelectorAll("details[open]")) open.open = false;
    list.prepend(element("li", {}, exchangeDetails(exchange, { open: true })));
    while (list.children.length > CALLS_SHOWN_MAX) list.lastElementChild.remove();
    byId("calls-empty").hidden = true;
  });
  return {};
}
