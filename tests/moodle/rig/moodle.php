<?php
// The real-Moodle rig's hands inside Moodle: PHP CLI actions that call Moodle's own APIs
// (no test generators: they refuse to run outside PHPUnit). Run from the untarred tree:
//
//   MOODLE_DIR=/tmp/…/moodle php moodle.php ACTION '{"json": "arguments"}'
//
// Each action prints one JSON object on its last line of output. Actions:
//   settings  loopback rig settings, web services on, REST protocol on
//   course    users, a course, enrolments, the web-service user/role/service/token, a quiz
//             with true/false questions and an assignment graded with a rubric
//   grade     a teacher fills the assignment's rubric for a student (as mod_assign_save_grade does)
//   tooltype  the LTI tool types registered in the site (id, name, state, services)

define('CLI_SCRIPT', true);
require(getenv('MOODLE_DIR') . '/config.php');
require_once($CFG->libdir . '/clilib.php');
require_once($CFG->dirroot . '/user/lib.php');
require_once($CFG->dirroot . '/course/lib.php');
require_once($CFG->dirroot . '/course/modlib.php');
require_once($CFG->libdir . '/questionlib.php');
require_once($CFG->dirroot . '/mod/quiz/locallib.php');
require_once($CFG->dirroot . '/mod/assign/locallib.php');
require_once($CFG->dirroot . '/grade/grading/lib.php');
require_once($CFG->libdir . '/gradelib.php');
require_once($CFG->dirroot . '/webservice/lib.php');

$action = $argv[1] ?? '';
$args = json_decode($argv[2] ?? '{}', true);

function out(array $data): void {
    echo "\n" . json_encode($data) . "\n";
}

function as_admin(): void {
    \core\session\manager::set_user(get_admin());
}

function user_by_name(string $username): stdClass {
    global $DB;
    return $DB->get_record('user', ['username' => $username], '*', MUST_EXIST);
}

function make_user(array $u): int {
    global $DB, $CFG;
    if ($row = $DB->get_record('user', ['username' => $u['username']])) {
        return (int) $row->id;
    }
    $user = (object) [
        'username' => $u['username'],
        'password' => $u['password'],
        'firstname' => $u['firstname'],
        'lastname' => $u['lastname'],
        'email' => $u['email'],
        'auth' => 'manual',
        'confirmed' => 1,
        'mnethostid' => $CFG->mnet_localhost_id,
    ];
    return (int) user_create_user($user, true, false);
}

function action_settings(array $args): array {
    // Moodle's cURL refuses loopback hosts and ports other than 80/443 by default; the rig
    // runs microcred on 127.0.0.1 and a free port.
    set_config('curlsecurityblockedhosts', '');
    set_config('curlsecurityallowedport', '');
    set_config('noreplyaddress', 'noreply@example.org');
    set_config('noemailever', 1);
    set_config('passwordpolicy', 0);
    set_config('enablewebservices', 1);
    set_config('webserviceprotocols', 'rest');
    // The gradebook's default "Natural" aggregation stays (AGS columns count toward the total).
    return ['ok' => true];
}

function make_module(stdClass $course, string $modname, array $fields): stdClass {
    global $DB;
    $info = (object) array_merge([
        'modulename' => $modname,
        'module' => $DB->get_field('modules', 'id', ['name' => $modname], MUST_EXIST),
        'course' => $course->id,
        'section' => 1,
        'visible' => 1,
        'visibleoncoursepage' => 1,
        'cmidnumber' => '',
        'groupmode' => 0,
        'groupingid' => 0,
        'availability' => null,
        'completion' => 0,
        'introeditor' => ['text' => '', 'format' => FORMAT_HTML, 'itemid' => 0],
    ], $fields);
    $info = add_moduleinfo($info, $course);
    $instance = $DB->get_record($modname, ['id' => $info->instance], '*', MUST_EXIST);
    $instance->cmid = (int) $info->coursemodule;
    return $instance;
}

function make_quiz(stdClass $course, array $spec): array {
    global $DB;
    $quiz = make_module($course, 'quiz', [
        'name' => $spec['name'],
        'timeopen' => 0, 'timeclose' => 0, 'timelimit' => 0,
        'preferredbehaviour' => 'deferredfeedback',
        'attempts' => 0, 'attemptonlast' => 0, 'grademethod' => QUIZ_GRADEHIGHEST,
        'decimalpoints' => 2, 'questiondecimalpoints' => -1,
        'attemptduring' => 1, 'correctnessduring' => 1, 'maxmarksduring' => 1,
        'marksduring' => 1, 'specificfeedbackduring' => 1, 'generalfeedbackduring' => 1,
        'rightanswerduring' => 1, 'overallfeedbackduring' => 0,
        'attemptimmediately' => 1, 'correctnessimmediately' => 1, 'maxmarksimmediately' => 1,
        'marksimmediately' => 1, 'specificfeedbackimmediately' => 1,
        'generalfeedbackimmediately' => 1, 'rightanswerimmediately' => 1,
        'overallfeedbackimmediately' => 1,
        'attemptopen' => 1, 'correctnessopen' => 1, 'maxmarksopen' => 1, 'marksopen' => 1,
        'specificfeedbackopen' => 1, 'generalfeedbackopen' => 1, 'rightansweropen' => 1,
        'overallfeedbackopen' => 1,
        'attemptclosed' => 1, 'correctnessclosed' => 1, 'maxmarksclosed' => 1,
        'marksclosed' => 1, 'specificfeedbackclosed' => 1, 'generalfeedbackclosed' => 1,
        'rightanswerclosed' => 1, 'overallfeedbackclosed' => 1,
        'questionsperpage' => 0, 'shuffleanswers' => 0, 'sumgrades' => 0,
        'grade' => $spec['grade'],
        'overduehandling' => 'autosubmit', 'graceperiod' => 86400,
        'quizpassword' => '', 'subnet' => '', 'browsersecurity' => '',
        'delay1' => 0, 'delay2' => 0, 'showuserpicture' => 0, 'showblocks' => 0,
        'navmethod' => QUIZ_NAVMETHOD_FREE,
    ]);
    $context = context_module::instance($quiz->cmid);
    $category = question_get_default_category($context->id, true);
    $qtype = question_bank::get_qtype('truefalse');
    foreach ($spec['questions'] as $i => $q) {
        $form = (object) [
            'category' => $category->id . ',' . $context->id,
            'name' => 'Question ' . ($i + 1),
            'questiontext' => ['text' => $q['text'], 'format' => FORMAT_HTML],
            'generalfeedback' => ['text' => '', 'format' => FORMAT_HTML],
            'defaultmark' => 1,
            'correctanswer' => $q['answer'] ? '1' : '0',
            'feedbacktrue' => ['text' => '', 'format' => FORMAT_HTML],
            'feedbackfalse' => ['text' => '', 'format' => FORMAT_HTML],
            'penalty' => 1,
            'status' => \core_question\local\bank\question_version_status::QUESTION_STATUS_READY,
        ];
        $question = (object) ['qtype' => 'truefalse', 'category' => $category->id,
            'contextid' => $context->id, 'createdby' => get_admin()->id, 'idnumber' => null];
        $saved = $qtype->save_question($question, $form);
        quiz_add_quiz_question($saved->id, $quiz, 0);
    }
    \mod_quiz\quiz_settings::create($quiz->id)->get_grade_calculator()->recompute_quiz_sumgrades();
    $quiz = $DB->get_record('quiz', ['id' => $quiz->id], '*', MUST_EXIST);
    return ['id' => (int) $quiz->id, 'cmid' => (int) get_coursemodule_from_instance(
        'quiz', $quiz->id)->id, 'sumgrades' => (float) $quiz->sumgrades,
        'grade' => (float) $quiz->grade, 'name' => $quiz->name];
}

function make_assignment(stdClass $course, array $spec): array {
    $assign = make_module($course, 'assign', [
        'name' => $spec['name'],
        'alwaysshowdescription' => 1, 'submissiondrafts' => 0,
        'requiresubmissionstatement' => 0, 'sendnotifications' => 0,
        'sendstudentnotifications' => 0, 'sendlatenotifications' => 0,
        'duedate' => 0, 'allowsubmissionsfromdate' => 0, 'grade' => $spec['grade'],
        'cutoffdate' => 0, 'gradingduedate' => 0, 'teamsubmission' => 0,
        'requireallteammemberssubmit' => 0, 'teamsubmissiongroupingid' => 0,
        'blindmarking' => 0, 'attemptreopenmethod' => 'untilpass', 'maxattempts' => 1,
        'markingworkflow' => 0, 'markingallocation' => 0, 'markinganonymous' => 0,
        'activityformat' => 0, 'timelimit' => 0, 'submissionattachments' => 0,
        'assignsubmission_onlinetext_enabled' => 1,
        'assignfeedback_comments_enabled' => 1,
    ]);
    $context = context_module::instance($assign->cmid);
    $manager = get_grading_manager($context, 'mod_assign', 'submissions');
    $manager->set_active_method('rubric');
    $controller = $manager->get_controller('rubric');
    $criteria = [];
    foreach ($spec['criteria'] as $ci => $c) {
        $levels = [];
        foreach ($c['levels'] as $li => $lv) {
            $levels['NEWID' . ($li + 1)] = ['definition' => $lv[0], 'score' => $lv[1]];
        }
        $criteria['NEWID' . ($ci + 1)] = ['sortorder' => $ci + 1,
            'description' => $c['description'], 'levels' => $levels];
    }
    $controller->update_definition((object) [
        'name' => $spec['name'] . ' rubric',
        'description_editor' => ['text' => '', 'format' => FORMAT_HTML, 'itemid' => 1],
        'rubric' => ['criteria' => $criteria, 'options' => [
            'sortlevelsasc' => 1, 'lockzeropoints' => 1, 'showdescriptionteacher' => 1,
            'showdescriptionstudent' => 1, 'showscoreteacher' => 1, 'showscorestudent' => 1,
            'enableremarks' => 1, 'showremarksstudent' => 1]],
        'saverubric' => 'Save rubric and make it ready',
        'status' => gradingform_controller::DEFINITION_STATUS_READY,
    ]);
    $definition = $manager->get_controller('rubric')->get_definition();
    $out = [];
    foreach ($definition->rubric_criteria as $cid => $c) {
        $levels = [];
        foreach ($c['levels'] as $lid => $lv) {
            $levels[] = ['id' => (int) $lid, 'definition' => $lv['definition'],
                'score' => (float) $lv['score']];
        }
        $out[] = ['id' => (int) $cid, 'description' => $c['description'], 'levels' => $levels];
    }
    return ['id' => (int) $assign->id, 'cmid' => $assign->cmid, 'name' => $assign->name,
        'grade' => (float) $spec['grade'], 'criteria' => $out];
}

function make_ws_user(array $spec): array {
    global $DB;
    $system = context_system::instance();
    $userid = make_user($spec['user']);
    $roleid = $DB->get_field('role', 'id', ['shortname' => 'microcredsync']);
    if (!$roleid) {
        $roleid = create_role('microcred sync', 'microcredsync', 'Reads results for microcred');
        set_role_contextlevels($roleid, [CONTEXT_SYSTEM]);
    }
    foreach ($spec['capabilities'] as $cap) {
        assign_capability($cap, CAP_ALLOW, $roleid, $system->id, true);
    }
    role_assign($roleid, $userid, $system->id);
    // What docs/evidence-sources.md tells the administrator, through the calls the admin pages
    // make: a service for *Authorised users only* (admin/webservice/service.php), and the user
    // added on its *Authorised users* page (admin/webservice/service_users.php).
    $manager = new webservice();
    $service = $DB->get_record('external_services', ['shortname' => 'microcred']);
    if (!$service) {
        $id = $manager->add_external_service((object) [
            'name' => 'microcred', 'shortname' => 'microcred', 'enabled' => 1,
            'restrictedusers' => 1, 'requiredcapability' => '', 'component' => null,
            'downloadfiles' => 0, 'uploadfiles' => 0,
        ]);
        $service = $DB->get_record('external_services', ['id' => $id], '*', MUST_EXIST);
    }
    if (!$DB->record_exists('external_services_users',
            ['externalserviceid' => $service->id, 'userid' => $userid])) {
        $manager->add_ws_authorised_user(
            (object) ['externalserviceid' => $service->id, 'userid' => $userid]);
    }
    $missing = [];
    foreach ($spec['functions'] as $fn) {
        if (!$DB->record_exists('external_functions', ['name' => $fn])) {
            $missing[] = $fn;
            continue;
        }
        if (!$DB->record_exists('external_services_functions',
                ['externalserviceid' => $service->id, 'functionname' => $fn])) {
            $DB->insert_record('external_services_functions',
                (object) ['externalserviceid' => $service->id, 'functionname' => $fn]);
        }
    }
    $token = \core_external\util::generate_token(EXTERNAL_TOKEN_PERMANENT, $service, $userid,
        $system, 0, '', 'microcred');
    // A token on the same service for a user with the same role who is not authorised: the
    // lane shows that Moodle refuses it, so the authorisation is what lets the sync user in.
    $outsider = make_user($spec['outsider']);
    role_assign($roleid, $outsider, $system->id);
    $outsidertoken = \core_external\util::generate_token(EXTERNAL_TOKEN_PERMANENT, $service,
        $outsider, $system, 0, '', 'not authorised');
    return ['userid' => $userid, 'token' => $token, 'missing_functions' => $missing,
        'outsider_token' => $outsidertoken];
}

function action_course(array $args): array {
    global $DB;
    as_admin();
    $ids = [];
    foreach ($args['users'] as $u) {
        $ids[$u['username']] = make_user($u);
    }
    $course = $DB->get_record('course', ['shortname' => $args['course']['shortname']]);
    if (!$course) {
        $course = create_course((object) [
            'fullname' => $args['course']['fullname'],
            'shortname' => $args['course']['shortname'],
            'category' => 1, 'format' => 'topics', 'numsections' => 2,
        ]);
    }
    $manual = enrol_get_plugin('manual');
    $instance = $DB->get_record('enrol', ['courseid' => $course->id, 'enrol' => 'manual'],
        '*', MUST_EXIST);
    foreach ($args['users'] as $u) {
        $roleid = $DB->get_field('role', 'id', ['shortname' => $u['role']], MUST_EXIST);
        $manual->enrol_user($instance, $ids[$u['username']], $roleid);
    }
    if ($DB->record_exists('quiz', ['course' => $course->id])) {
        cli_error('the course has a quiz already: the rig makes a fresh site for every run');
    }
    $quiz = make_quiz($course, $args['quiz']);
    $assign = make_assignment($course, $args['assignment']);
    $ws = make_ws_user($args['ws']);
    rebuild_course_cache($course->id, true);
    return ['course' => (int) $course->id, 'users' => $ids, 'quiz' => $quiz,
        'assignment' => $assign, 'ws' => $ws];
}

function action_grade(array $args): array {
    global $DB;
    // As the teacher, through the assignment's own save_grade (what the grader page and
    // mod_assign_save_grade call): the rubric filling decides the grade.
    \core\session\manager::set_user(user_by_name($args['teacher']));
    [$course, $cm] = get_course_and_cm_from_cmid($args['cmid'], 'assign');
    $assign = new assign(context_module::instance($cm->id), $cm, $course);
    $student = user_by_name($args['student']);
    $criteria = [];
    foreach ($args['levels'] as $criterionid => $levelid) {
        $criteria[(int) $criterionid] = ['levelid' => (int) $levelid, 'remark' => ''];
    }
    $data = (object) [
        'addattempt' => 0, 'attemptnumber' => -1, 'workflowstate' => '', 'applytoall' => 0,
        'grade' => 0, 'advancedgrading' => ['criteria' => $criteria],
        'assignfeedbackcomments_editor' => ['text' => '', 'format' => FORMAT_HTML],
    ];
    $assign->save_grade($student->id, $data);
    $grade = $assign->get_user_grade($student->id, false);
    return ['grade' => (float) $grade->grade];
}

function action_tooltype(array $args): array {
    global $DB;
    $out = [];
    foreach ($DB->get_records('lti_types', null, 'id') as $t) {
        $config = $DB->get_records_menu('lti_types_config', ['typeid' => $t->id], '', 'name,value');
        $out[] = ['id' => (int) $t->id, 'name' => $t->name, 'state' => (int) $t->state,
            'coursevisible' => (int) $t->coursevisible, 'clientid' => $t->clientid,
            'config' => $config];
    }
    return ['types' => $out];
}

$actions = ['settings' => 'action_settings', 'course' => 'action_course',
    'grade' => 'action_grade', 'tooltype' => 'action_tooltype'];
if (!isset($actions[$action])) {
    cli_error("unknown action '$action'; one of: " . implode(', ', array_keys($actions)));
}
out($actions[$action]($args));
