"""Drives headless Chromium through the console of a running `ccgate run`.

Usage: browser.py BASE_URL TOKEN SHOT_DIR AXE_JS QUEUE_ID_HELD

Prints one JSON object on its last line: what it saw, for the Rust test to assert. Screenshots
of every page at 1280 px and at phone width go to SHOT_DIR.
"""

import json
import os
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

base, token, shots, axe_path, held_id = sys.argv[1:6]
os.makedirs(shots, exist_ok=True)
axe_js = open(axe_path, encoding="utf-8").read()
seen = {"pages": {}, "axe": {}, "overflow": {}, "browser_errors": {}}


def driver():
    o = webdriver.ChromeOptions()
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
              "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--no-first-run", "--disable-gpu",
              "--user-data-dir=" + tempfile.mkdtemp(prefix="ccgate-chromium-")):
        o.add_argument(a)
    o.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=o)


def navigate(d, act):
    """Runs `act` (a click or a submit) and waits until the next page has replaced this one."""
    old = d.find_element(By.TAG_NAME, "html")
    act()
    WebDriverWait(d, 30).until(expected_conditions.staleness_of(old))
    WebDriverWait(d, 30).until(lambda drv: drv.execute_script("return document.readyState") == "complete")


def figure(d, name):
    return int(d.find_element(By.CSS_SELECTOR, '[data-figure="%s"]' % name).text.strip())


def check_page(d, name):
    """Screenshot, the accessibility check (labels, contrast and the rest of WCAG 2 A/AA),
    and whether the page fits the window's width."""
    d.save_screenshot(os.path.join(shots, name + ".png"))
    d.execute_script(axe_js)
    result = d.execute_async_script(
        "var done = arguments[arguments.length - 1];"
        "axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21aa']}})"
        ".then(function (r) { done(r.violations.map(function (v) {"
        "  return {id: v.id, impact: v.impact, nodes: v.nodes.slice(0, 3).map(function (n) { return n.html; })};"
        "})); }, function (e) { done([{id: 'axe-error', impact: String(e), nodes: []}]); });")
    seen["axe"][name] = result
    seen["overflow"][name] = d.execute_script(
        "return document.documentElement.scrollWidth > window.innerWidth + 1;")
    # Script errors, blocked resources, Content-Security-Policy refusals.
    seen["browser_errors"][name] = [e["message"] for e in d.get_log("browser") if e["level"] == "SEVERE"]


def post_without_token():
    data = urllib.parse.urlencode({"action": "hold", "id": held_id}).encode()
    req = urllib.request.Request(base + "/queue/action", data=data, method="POST")
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


d = driver()
d.set_script_timeout(60)
try:
    d.set_window_size(1280, 900)

    # Overview with real numbers.
    d.get(base + "/")
    seen["overview"] = {
        "accepted_smtp_hour": figure(d, "accepted-smtp-hour"),
        "delivered_modern_hour": figure(d, "delivered-modern-hour"),
        "held_cutover": figure(d, "held-cutover"),
        "quarantined_files": figure(d, "quarantined-files"),
        "people_migrating": figure(d, "people-migrating"),
        "people_migrated": figure(d, "people-migrated"),
    }
    check_page(d, "overview-1280")

    # People: search by part of an address, open the person.
    d.get(base + "/people")
    box = d.find_element(By.ID, "q")
    box.send_keys("pat.lee")
    navigate(d, box.submit)
    links = [a.text for a in d.find_elements(By.CSS_SELECTOR, "main table a")]
    seen["search"] = links
    check_page(d, "people-1280")
    navigate(d, d.find_element(By.LINK_TEXT, "Pat Lee").click)
    seen["person"] = d.find_element(By.TAG_NAME, "main").text
    check_page(d, "person-1280")

    # Message trace by address.
    d.get(base + "/trace?q=" + urllib.parse.quote("pat.lee@"))
    seen["trace"] = [td.text for td in d.find_elements(By.CSS_SELECTOR, "main tbody td:nth-child(2)")]
    check_page(d, "trace-1280")

    # Queue, one message, quarantine.
    d.get(base + "/queue?state=held")
    seen["queue_held"] = d.find_element(By.TAG_NAME, "main").text
    check_page(d, "queue-1280")
    d.get(base + "/message?id=" + held_id)
    check_page(d, "message-1280")
    d.get(base + "/quarantine")
    seen["quarantine"] = d.find_element(By.TAG_NAME, "main").text
    check_page(d, "quarantine-1280")
    files = d.find_elements(By.CSS_SELECTOR, 'a[href^="/quarantine/file"]')
    if files:
        navigate(d, files[0].click)
        seen["quarantine_file"] = d.find_element(By.TAG_NAME, "main").text
        check_page(d, "quarantine-file-1280")

    # An action without the token is refused: by a script, and by the browser before sign-in.
    seen["no_token_status"], seen["no_token_body"] = post_without_token()
    d.get(base + "/queue?state=held")
    d.find_element(By.ID, "sel-" + held_id).click()
    navigate(d, d.find_element(By.CSS_SELECTOR, 'button[value="hold"]').click)
    seen["browser_no_token"] = d.find_element(By.TAG_NAME, "body").text
    # The 403 itself is the browser's one expected error.
    seen["refusal_logged"] = [e["message"] for e in d.get_log("browser") if "403" in e["message"]]

    # Sign in, then cut Pat Lee over.
    d.get(base + "/login")
    check_page(d, "login-1280")
    d.find_element(By.ID, "login-name").send_keys("helpdesk-test")
    d.find_element(By.ID, "login-token").send_keys(token)
    navigate(d, d.find_element(By.CSS_SELECTOR, 'form[action="/login"] button').click)
    seen["signed_in"] = d.find_element(By.CSS_SELECTOR, "header .who").text
    cookies = d.get_cookies()
    seen["cookie"] = [{"name": c["name"], "httpOnly": c.get("httpOnly"), "sameSite": c.get("sameSite")} for c in cookies]
    d.get(base + "/cutover")
    check_page(d, "cutover-1280")
    d.find_element(By.ID, "names").send_keys("Lee, Pat")
    d.find_element(By.ID, "st-migrated").click()
    navigate(d, d.find_element(By.CSS_SELECTOR, 'form[action="/cutover"] button[type="submit"]').click)
    seen["cutover"] = d.find_element(By.TAG_NAME, "main").text
    check_page(d, "cutover-result-1280")

    # A cutover for later: listed with a Cancel button, then cancelled.
    d.get(base + "/cutover")
    d.find_element(By.ID, "names").send_keys("Smith, John")
    d.find_element(By.ID, "st-migrating").click()
    d.execute_script("document.getElementById('at').value = '2099-01-01T09:30'")
    navigate(d, d.find_element(By.CSS_SELECTOR, 'form[action="/cutover"] button[type="submit"]').click)
    seen["scheduled"] = d.find_element(By.TAG_NAME, "main").text
    d.get(base + "/cutover")
    seen["scheduled_list"] = d.find_element(By.CSS_SELECTOR, "ul.scheduled").text
    check_page(d, "cutover-scheduled-1280")
    navigate(d, d.find_element(By.CSS_SELECTOR, 'form[action="/cutover/cancel"] button').click)
    seen["cancelled"] = d.find_element(By.TAG_NAME, "main").text
    d.get(base + "/cutover")
    seen["scheduled_after_cancel"] = len(d.find_elements(By.CSS_SELECTOR, "ul.scheduled li"))

    # Phone width.
    d.set_window_size(390, 844)
    for name, path in (("overview", "/"), ("people", "/people?q=test"), ("trace", "/trace?q=pat"),
                       ("queue", "/queue"), ("cutover", "/cutover")):
        d.get(base + path)
        check_page(d, name + "-phone")
finally:
    d.quit()

print(json.dumps(seen))
