"""The ``serve`` page in a real browser: headless Chromium, driven by Selenium, against a real server process.

It does what a person does: open the page, see the layers, click one and see its kernels, give a
photo and see the feature maps, the class activation map (where onnxvis has it) and the top-5, give a
text file and see the error, and go on. The ``browser`` fixture (tests/conftest.py) launches
Chromium: a local run without it skips, a CI run (CI=true) fails.
"""

from __future__ import annotations

import pytest

from conftest import COFFEE, ESPRESSO, SQUEEZENET, ServerProcess, asset

pytest.importorskip("starlette", reason="the serve extra is not installed (pip install '.[serve]')")
pytest.importorskip("uvicorn", reason="the serve extra is not installed (pip install '.[serve]')")

WAIT = 600  # seconds: only so that a broken page cannot hang the suite; nothing here measures speed


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = ServerProcess(asset(SQUEEZENET), tmp_path_factory.mktemp("serve-browser"))
    yield srv
    srv.stop()


def wait_for(driver, script: str, *args):
    """Poll a JavaScript expression until it is truthy; returns its value."""
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, WAIT, poll_frequency=0.1).until(lambda d: d.execute_script(script, *args))


def picture(driver, element_id: str) -> dict:
    return driver.execute_script(
        "const i = document.getElementById(arguments[0]);"
        "return {src: i.getAttribute('src') || '', w: i.naturalWidth, h: i.naturalHeight, complete: i.complete};",
        element_id,
    )


def shown(element_id: str) -> str:
    """JS: the picture has loaded from a new object URL (not ``old``, the first argument)."""
    return (
        f"const i = document.getElementById('{element_id}');"
        "return i.getAttribute('src') && i.getAttribute('src') !== arguments[0] && i.complete && i.naturalWidth > 0;"
    )


def severe(entries: list[dict]) -> list[dict]:
    return [e for e in entries if e.get("level") == "SEVERE"]


def test_a_person_explores_squeezenet(browser, server, tmp_path):  # noqa: F811
    from selenium.webdriver.common.by import By

    browser.get_log("browser")  # forget earlier pages
    browser.get(server.url)
    wait_for(browser, "return document.body.dataset.ready === '1'")

    # the summary and the layers
    summary = browser.find_element(By.ID, "summary").text
    assert "onnx-caffe2" in summary and "data_0" in summary and "caffe" in summary
    layers = browser.find_elements(By.CSS_SELECTOR, "#layers [data-layer]")
    assert len(layers) == 26
    assert [li.get_attribute("data-layer") for li in layers[:3]] == ["0", "1", "2"]
    assert "64x3x3x3" in layers[0].text and "std" in layers[0].text and "near-dead" in layers[0].text
    assert browser.find_element(By.ID, "error").text == ""

    # click a layer: it is selected and its kernels show
    first = wait_for(browser, shown("kernels"), "") and picture(browser, "kernels")
    layers[3].click()
    wait_for(browser, "return document.querySelector('#layers [data-layer=\"3\"]').classList.contains('selected')")
    wait_for(browser, shown("kernels"), first["src"])
    kernels = picture(browser, "kernels")
    assert kernels["w"] > 0 and kernels["src"].startswith("blob:")
    assert (kernels["w"], kernels["h"]) != (first["w"], first["h"])  # 64x16x3x3, not conv1's 64x3x3x3

    # the diverging colour map and the split view give other pictures
    browser.find_element(By.CSS_SELECTOR, "input[name=colormap][value=diverging]").click()
    wait_for(browser, shown("kernels"), kernels["src"])
    diverging = picture(browser, "kernels")
    browser.find_element(By.ID, "split").click()
    wait_for(browser, shown("kernels"), diverging["src"])
    split = picture(browser, "kernels")
    assert split["w"] < diverging["w"] or split["h"] < diverging["h"]  # one output channel's 16 slices

    # give the coffee photo: feature maps, top-5 with espresso first, and the CAM where onnxvis has it
    browser.find_element(By.ID, "image").send_keys(str(asset(COFFEE)))
    wait_for(browser, shown("fmaps"), "")
    wait_for(browser, "return document.querySelectorAll('#predictions li').length === 5")
    top = browser.find_elements(By.CSS_SELECTOR, "#predictions li")
    assert top[0].get_attribute("data-index") == str(ESPRESSO)
    assert top[0].text.startswith(f"{ESPRESSO} espresso: ") and top[0].text.endswith("%")  # ImageNet-1k's names, guessed
    assert browser.find_element(By.ID, "labels-note").text == (
        "class names: ImageNet-1k (guessed from 1000 outputs); start onnxvis serve with --labels FILE if these are not ImageNet's classes"
    )
    assert picture(browser, "fmaps")["w"] > 400
    if browser.execute_script("return state.summary.cam"):
        wait_for(browser, shown("cam"), "")
        assert browser.find_element(By.ID, "cam-note").text == f"class {ESPRESSO}"
        predicted = picture(browser, "cam")
        top[1].click()  # the map of another class
        wait_for(browser, shown("cam"), predicted["src"])
        assert browser.find_element(By.ID, "cam-note").text == f"class {top[1].get_attribute('data-index')}"
        assert browser.find_element(By.ID, "cam-target").get_attribute("value") == top[1].get_attribute("data-index")
    else:
        assert "not available" in browser.find_element(By.ID, "cam-note").text
        assert picture(browser, "cam")["src"] == ""
    assert browser.find_element(By.ID, "error").text == ""
    assert not severe(browser.get_log("browser"))

    # a text file: a one-line error, and the page goes on
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo\n")
    fmaps_before = picture(browser, "fmaps")
    browser.find_element(By.ID, "image").send_keys(str(notes))
    wait_for(browser, "return document.getElementById('error').textContent.length > 0")
    error = browser.find_element(By.ID, "error").text
    assert "not an image" in error and "\n" not in error
    logged = severe(browser.get_log("browser"))
    # Chromium logs the refused request itself (the 400); nothing else may fail
    assert len(logged) <= 1 and all("/api/photos" in e["message"] and "400" in e["message"] for e in logged), logged
    layers[5].click()
    wait_for(browser, shown("fmaps"), fmaps_before["src"])
    wait_for(browser, "return document.getElementById('error').textContent === ''")

    # the sample photo, and the preprocessing changed from the page
    browser.find_element(By.ID, "sample").click()
    wait_for(browser, f"return document.querySelector('#predictions li').dataset.index !== '{ESPRESSO}'")
    before = picture(browser, "fmaps")
    browser.execute_script("const s = document.getElementById('preset'); s.value = 'imagenet'; s.dispatchEvent(new Event('change'));")
    wait_for(browser, shown("fmaps"), before["src"])

    # a photo dropped onto the page does what the file input does
    old = picture(browser, "fmaps")
    browser.execute_script(
        """
        const canvas = document.createElement('canvas');
        canvas.width = 64; canvas.height = 48;
        const g = canvas.getContext('2d');
        g.fillStyle = '#c33'; g.fillRect(0, 0, 64, 48); g.fillStyle = '#3c3'; g.fillRect(16, 8, 24, 24);
        canvas.toBlob((blob) => {
          const data = new DataTransfer();
          data.items.add(new File([blob], 'dropped.png', {type: 'image/png'}));
          document.body.dispatchEvent(new DragEvent('drop', {dataTransfer: data, bubbles: true, cancelable: true}));
        }, 'image/png');
        """
    )
    wait_for(browser, shown("fmaps"), old["src"])
    assert browser.find_element(By.ID, "error").text == ""
    assert not severe(browser.get_log("browser"))

    # nothing came from elsewhere
    fetched = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert fetched and all(name.startswith(server.url) or name.startswith("blob:") for name in fetched), fetched


def test_a_click_on_a_feature_map_shows_what_its_channel_wants_to_see(browser, server):  # noqa: F811
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    browser.get(server.url)
    wait_for(browser, "return document.body.dataset.ready === '1'")
    browser.find_element(By.CSS_SELECTOR, '#layers [data-layer="1"]').click()  # fire2 squeeze: 16 channels, 2 rows of 8
    wait_for(browser, "return document.querySelector('#layers [data-layer=\"1\"]').classList.contains('selected')")
    browser.find_element(By.ID, "sample").click()
    wait_for(browser, shown("fmaps"), "")
    fmaps = browser.find_element(By.ID, "fmaps")
    size = browser.execute_script("const i = arguments[0]; return [i.clientWidth, i.clientHeight];", fmaps)
    # the middle of the second row's second tile: channel 9
    x, y = size[0] * 1.5 / 8, size[1] * 1.5 / 2
    ActionChains(browser).move_to_element_with_offset(fmaps, int(x - size[0] / 2), int(y - size[1] / 2)).click().perform()
    assert browser.find_element(By.ID, "features-channel").get_attribute("value") == "9"
    wait_for(browser, shown("features"), "")
    wait_for(browser, "return document.getElementById('features-note').textContent.includes('step 16 of 512')")
    assert picture(browser, "features")["w"] == 128
    assert browser.find_element(By.ID, "features-cancel").is_enabled()
    browser.find_element(By.ID, "features-cancel").click()
    wait_for(browser, "return document.getElementById('features-note').textContent.includes('(cancelled)')")
    assert not browser.find_element(By.ID, "features-cancel").is_enabled()
    assert browser.find_element(By.ID, "error").text == ""
